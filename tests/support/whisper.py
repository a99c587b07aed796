"""A Whisper model that never finishes loading, so a transcription timeout under test is certain to fire."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def stalled_whisper(model: Path, into: Path) -> Path:
    """A copy of ``model`` whose weights file is a FIFO nobody writes: the worker blocks opening it (it is alive,
    doing nothing) until it is killed."""
    out = into / "stalled-whisper"
    out.mkdir()
    for item in model.iterdir():
        if item.name != "model.bin":
            shutil.copy(item, out / item.name)
    os.mkfifo(out / "model.bin")
    return out
