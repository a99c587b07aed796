"""``/v1/videos``: fetch and check a video ahead of questions (the web page plays the sanitized copy)."""

from __future__ import annotations

import asyncio
import dataclasses

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.api.deps import ServicesDep
from gateway.api.video_refs import VideoRef, resolve
from gateway.errors import NotFound, VChatError, excerpt
from gateway.media.library import Asset

router = APIRouter(tags=["videos"])


class VideoRequest(BaseModel):
    """Exactly one of ``url`` (a file or a page), ``data_url`` or ``file_id``."""

    model_config = ConfigDict(extra="ignore")

    url: str | None = Field(None, min_length=1)
    data_url: str | None = Field(None, min_length=1)
    file_id: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> VideoRequest:
        if sum(value is not None for value in (self.url, self.data_url, self.file_id)) != 1:
            raise ValueError("give exactly one of url, data_url, file_id")
        return self

    def ref(self) -> VideoRef:
        if self.url is not None:
            return VideoRef("url", self.url, "url")
        if self.data_url is not None:
            return VideoRef("data", self.data_url, "data_url")
        return VideoRef("file", str(self.file_id), "file_id")


def video_object(asset: Asset) -> dict[str, object]:
    return {"id": asset.id, "object": "video", "facts": dataclasses.asdict(asset.facts),
            "content_url": f"/v1/videos/{asset.id}/content"}


@router.post("/v1/videos")
async def add_video(body: VideoRequest, services: ServicesDep) -> JSONResponse:
    """Fetch (or find in the cache), check and sanitize a video; answer with its facts and a playable URL."""
    asset = await resolve(body.ref(), services.media)
    return JSONResponse(video_object(asset))


@router.get("/v1/videos/{video_id}/content", response_model=None)
async def video_content(video_id: str, services: ServicesDep) -> FileResponse:
    """The sanitized MP4 (range requests work, so players can seek)."""
    stored = await services.media.store.get(video_id)
    if stored is None or not await asyncio.to_thread(stored.video.is_file):
        raise NotFound(f"No cached video {excerpt(video_id)}.", param="video_id", code="video_not_found")
    return FileResponse(stored.video, media_type="video/mp4")


@router.get("/v1/videos/{video_id}")
async def get_video(video_id: str, services: ServicesDep) -> JSONResponse:
    library = services.media
    stored = await library.store.get(video_id)
    if stored is None:
        raise NotFound(f"No cached video {excerpt(video_id)}.", param="video_id", code="video_not_found")
    try:
        asset = await library.load(stored)
    except (OSError, ValueError) as exc:
        raise VChatError("The cached video's facts are unreadable.") from exc
    return JSONResponse(video_object(asset))
