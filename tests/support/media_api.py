"""Checks shared by the media API tests: the OpenAI error envelope, and proof that a refusal left nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from tests.conftest import marked_pids
from tests.support.clips import make_clip

# What a readable refusal must not contain: internals a client cannot act on.
_INTERNALS = ("Traceback", "Errno", "Exception", "httpx", "httpcore", "yt_dlp", "ffprobe -", "/tmp/")


def tagged_clip() -> bytes:
    """3 s of 160x120 at 10 fps with audio, tagged with metadata that sanitizing must strip."""
    return make_clip(3.0, "160x120", 10, extra=("-metadata", "title=secret-title")).read_bytes()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """Assert ``response`` is the OpenAI error envelope with this status and code; return its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code, error
    assert error["type"] == "invalid_request_error", error
    message = error["message"]
    assert isinstance(message, str) and len(message) >= 15, error
    assert not any(marker in message for marker in _INTERNALS), message
    return message


def media_entries(media_dir: Path) -> dict[str, list[str]]:
    """The names in the cache's work, object, URL-index and file-record folders."""
    return {name: sorted(os.listdir(media_dir / name)) if (media_dir / name).is_dir() else []
            for name in ("tmp", "objects", "urls", "files")}


def tool_pids() -> list[int]:
    """ffmpeg / ffprobe processes started by this test session that are still alive."""
    return [pid for pid in marked_pids() if _comm(pid) in ("ffmpeg", "ffprobe")]


def assert_nothing_left(media_dir: Path) -> None:
    """No temp file, object, URL entry or file record, and no ffmpeg/ffprobe still running."""
    assert media_entries(media_dir) == {"tmp": [], "objects": [], "urls": [], "files": []}
    assert tool_pids() == []


def probe_file(path: Path) -> dict[str, object]:
    """ffprobe's JSON description of a local file (the test's own trusted clip or a downloaded copy)."""
    result = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                            capture_output=True, check=True, timeout=30)
    info: dict[str, object] = json.loads(result.stdout)
    return info


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
