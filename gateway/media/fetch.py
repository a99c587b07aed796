"""Download one untrusted video URL into a directory, within byte, time and redirect limits, through the SSRF guard."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from gateway.errors import MediaFetchFailed, MediaTimeout, MediaTooLarge, VChatError
from gateway.media.guard import HostPolicy, check_url
from gateway.media.redirects import loggable_url, send_following
from gateway.media.space import MakeRoom, Spool, full_disk_refused
from vchat_settings import Settings

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    """How much, how long and how many hops one fetch may take."""

    max_bytes: int
    timeout_s: float  # wall-clock, from the first request to the last byte
    idle_timeout_s: float  # longest wait for the next bytes (connect, headers, body)
    max_redirects: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        """The limits configured by the ``media_*`` settings."""
        return cls(
            max_bytes=settings.media_max_bytes, timeout_s=settings.media_fetch_timeout_s,
            idle_timeout_s=settings.media_idle_timeout_s, max_redirects=settings.media_max_redirects,
        )


@dataclass(frozen=True)
class Fetched:
    """A downloaded body in a temp file inside ``dest_dir``; the caller renames it into place or deletes it."""

    path: Path
    size: int
    sha256: str
    content_type: str | None
    final_url: str  # may carry tokens: never log it, log ``loggable_url(final_url)``


async def fetch_to_file(
    client: httpx2.AsyncClient, url: str, dest_dir: Path, limits: FetchLimits, policy: HostPolicy,
    make_room: MakeRoom | None = None,
) -> Fetched:
    """Fetch ``url`` (following up to ``limits.max_redirects`` checked redirects) into a temp file in ``dest_dir``.

    ``client`` must use a guarded transport (``transport.guarded_async_client``): it checks each address at connect.
    When the disk fills up, ``make_room`` is asked once to free what the rest may need. Raises UrlNotAllowed,
    MediaFetchFailed, MediaTimeout, MediaTooLarge or InsufficientStorage; no file is left behind on any failure.
    """
    shown = loggable_url(url)
    try:
        async with asyncio.timeout(limits.timeout_s):
            fetched = await _follow(client, url, dest_dir, limits, policy, make_room)
    except TimeoutError:
        error = MediaTimeout(f"fetching {shown} took longer than {limits.timeout_s:g} s")
        logger.info("media fetch of %s failed: %s", shown, error.message)
        raise error from None
    except VChatError as exc:
        logger.info("media fetch of %s failed: %s", shown, exc.message)
        raise
    logger.info("fetched %s: %d bytes from %s", shown, fetched.size, loggable_url(fetched.final_url))
    return fetched


async def _follow(
    client: httpx2.AsyncClient, url: str, dest_dir: Path, limits: FetchLimits, policy: HostPolicy,
    make_room: MakeRoom | None,
) -> Fetched:
    first = check_url(url, policy)
    # Videos are compressed already; identity keeps the byte cap about the bytes that land on disk.
    request = client.build_request("GET", first, headers={"Accept-Encoding": "identity"}, timeout=limits.idle_timeout_s)
    with _translated(first, limits):
        response = await send_following(client, request, policy, limits.max_redirects)
        try:
            if not response.is_success:
                status = f"{response.status_code} {response.reason_phrase}".rstrip()
                raise MediaFetchFailed(f"{loggable_url(response.url)} answered HTTP {status}")
            return await _save(response, response.url, dest_dir, limits, make_room)
        finally:
            await response.aclose()


@contextmanager
def _translated(url: httpx2.URL, limits: FetchLimits) -> Iterator[None]:
    """Turn httpx2 errors into the gateway's media errors (the guard's UrlNotAllowed passes through)."""
    try:
        yield
    except httpx2.TimeoutException as exc:
        raise MediaTimeout(f"{loggable_url(_hop(exc, url))} sent nothing for {limits.idle_timeout_s:g} s") from None
    except httpx2.HTTPError as exc:
        raise MediaFetchFailed(f"could not fetch {loggable_url(_hop(exc, url))}: {exc or type(exc).__name__}") from None


def _hop(exc: httpx2.HTTPError, first: httpx2.URL) -> httpx2.URL:
    """The URL of the hop that failed (httpx2 attaches the request to the errors it raises)."""
    try:
        return exc.request.url
    except RuntimeError:
        return first


@contextmanager
def _part_file(dest_dir: Path) -> Iterator[tuple[io.FileIO, Path]]:
    """A new unbuffered temp file in ``dest_dir`` (same filesystem, so the caller's rename is atomic), deleted on any
    failure."""
    with full_disk_refused(dest_dir):
        handle, name = tempfile.mkstemp(prefix=".fetch-", suffix=".part", dir=dest_dir)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb", buffering=0) as out:
            yield out, path
    except BaseException:  # cancellation included
        path.unlink(missing_ok=True)
        raise


async def _save(response: httpx2.Response, url: httpx2.URL, dest_dir: Path, limits: FetchLimits,
                make_room: MakeRoom | None) -> Fetched:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise MediaTooLarge(f"{loggable_url(url)} is {int(declared)} bytes; the limit is {limits.max_bytes}")
    digest = hashlib.sha256()
    size = 0
    with _part_file(dest_dir) as (out, path):
        spool = Spool(out, path, int(declared) if declared.isdigit() else limits.max_bytes, make_room)
        async for chunk in response.aiter_bytes(_CHUNK):
            size += len(chunk)
            # Content-Length may be absent or lie: the cap is enforced on the bytes actually received.
            if size > limits.max_bytes:
                raise MediaTooLarge(f"{loggable_url(url)} is larger than the limit of {limits.max_bytes} bytes")
            digest.update(chunk)
            # Writes of ≤64 KiB go to the page cache in microseconds; a thread hop per chunk would cost more and
            # could still be writing after a cancellation has removed the file.
            await spool.append(chunk)
    return Fetched(
        path=path, size=size, sha256=digest.hexdigest(), content_type=response.headers.get("Content-Type"),
        final_url=str(url),
    )


async def fetch_text(client: httpx2.AsyncClient, url: str, limits: FetchLimits, policy: HostPolicy) -> bytes:
    """The first ``limits.max_bytes + 1`` bytes of a small text file at ``url`` (a caption track), held in memory:
    one byte more than the cap tells the caller the file was longer. Same guard, redirects and time limits as
    ``fetch_to_file``; raises its errors."""
    first = check_url(url, policy)
    request = client.build_request("GET", first, timeout=limits.idle_timeout_s)
    try:
        async with asyncio.timeout(limits.timeout_s):
            with _translated(first, limits):
                response = await send_following(client, request, policy, limits.max_redirects)
                try:
                    if not response.is_success:
                        status = f"{response.status_code} {response.reason_phrase}".rstrip()
                        raise MediaFetchFailed(f"{loggable_url(response.url)} answered HTTP {status}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes(_CHUNK):
                        body += chunk
                        if len(body) > limits.max_bytes:
                            break
                    return bytes(body[: limits.max_bytes + 1])
                finally:
                    await response.aclose()
    except TimeoutError:
        raise MediaTimeout(f"fetching {loggable_url(url)} took longer than {limits.timeout_s:g} s") from None
