"""Hands memory the allocator keeps but nothing uses back to the operating system (glibc's ``malloc_trim``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to trim with
        return None
    return trim


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; False where the C library cannot.

    A large request body arrives as thousands of 64 KiB chunks, below glibc's mmap threshold: once freed they stay
    in the heap as free blocks the process keeps (RSS a few hundred MB higher after one big body) unless trimmed.
    Blocking for milliseconds on a large heap: run it in a worker thread.
    """
    trim = _malloc_trim()
    return trim is not None and trim(0) == 1
