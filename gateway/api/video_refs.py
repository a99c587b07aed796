"""Finds the video a chat request is about — in any form a client sends it — and resolves it to an asset."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gateway.api.schemas import ChatMessage, FilePart, ImageUrlPart, TextPart, VideoUrlPart
from gateway.errors import InvalidRequest
from gateway.media.library import Asset, VideoLibrary
from gateway.media.pages import is_video_link

# Stops at whitespace, quotes, angle brackets and closing brackets; trailing punctuation is trimmed after.
_LINK = re.compile(r"https?://[^\s<>\"'`\])}]+", re.IGNORECASE)


@dataclass(frozen=True)
class VideoRef:
    """Where the video is: a URL (file or page), a data URL, or an uploaded file's id; ``param`` names it."""

    kind: Literal["url", "data", "file"]
    value: str
    param: str
    from_text: bool = False


def links_in(text: str) -> list[str]:
    """Video-looking links in free text (known video sites, or paths ending in a video extension)."""
    found = []
    for match in _LINK.finditer(text):
        url = match.group(0).rstrip(".,;:!?")
        if is_video_link(url):
            found.append(url)
    return found


def _part_ref(part: object, param: str) -> VideoRef | None:
    if isinstance(part, VideoUrlPart | ImageUrlPart):
        url = part.video_url.url if isinstance(part, VideoUrlPart) else part.image_url.url
        url = url.strip()
        if url[:5].lower() == "data:":
            return VideoRef("data", url, param)
        return VideoRef("url", url, param)
    if isinstance(part, FilePart):
        if part.file.file_id:
            return VideoRef("file", part.file.file_id, f"{param}.file.file_id")
        if part.file.file_data:
            data = part.file.file_data.strip()
            if not data.startswith("data:"):
                data = "data:application/octet-stream;base64," + data
            return VideoRef("data", data, f"{param}.file.file_data")
        raise InvalidRequest("A file part needs 'file_id' or 'file_data'.", param=f"{param}.file")
    return None


def message_ref(message: ChatMessage, index: int) -> VideoRef | None:
    """The video one message carries: its last media part, else the last video link in its text."""
    if isinstance(message.content, list):
        refs = [_part_ref(part, f"messages.{index}.content.{n}") for n, part in enumerate(message.content)]
        media = [ref for ref in refs if ref is not None]
        if len(media) > 1:
            raise InvalidRequest("Send one video per message.", param=f"messages.{index}.content",
                                 code="too_many_videos")
        if media:
            return media[0]
    text = message.text() if not isinstance(message.content, list) else "\n".join(
        p.text for p in message.content if isinstance(p, TextPart))
    links = links_in(text) if message.role == "user" else []
    return VideoRef("url", links[-1], f"messages.{index}.content", from_text=True) if links else None


def find_video(messages: list[ChatMessage]) -> VideoRef | None:
    """The conversation's latest video: follow-up questions without a new video reuse the last one sent."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role not in ("user", "system", "developer"):
            continue
        ref = message_ref(messages[index], index)
        if ref is not None:
            return ref
    return None


async def resolve(ref: VideoRef, library: VideoLibrary) -> Asset:
    """The cached, sanitized asset for a reference (fetching, decoding and sanitizing only the first time)."""
    try:
        if ref.kind == "file":
            return await library.from_file_id(ref.value)
        if ref.kind == "data":
            return await library.from_data_url(ref.value)
        return await library.from_url(ref.value)
    except InvalidRequest as exc:
        if exc.param is None:
            exc.param = ref.param
        raise
