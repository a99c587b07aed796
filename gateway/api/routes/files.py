"""The OpenAI Files API for videos: upload once, refer to the file id in later chat requests."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from gateway.api.deps import ServicesDep
from gateway.api.multipart import receive_upload
from gateway.errors import InvalidRequest, NotFound, excerpt

router = APIRouter(tags=["files"])

_PURPOSES = {"user_data", "vision", "assistants", "batch", "fine-tune", "evals"}


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"No file with id {excerpt(file_id)}.", param="file_id", code="file_not_found")


@router.post("/v1/files")
async def upload_file(request: Request, services: ServicesDep) -> JSONResponse:
    """Multipart ``file`` + ``purpose``; the video is checked and sanitized before the id is returned."""
    library = services.media
    async with library.store.temp_dir() as work:
        upload = await receive_upload(request, work, services.settings.media_max_bytes,
                                      make_room=library.store.make_room)
        purpose = upload.fields.get("purpose", "user_data").strip() or "user_data"
        if purpose not in _PURPOSES:
            raise InvalidRequest(f"Unknown purpose {excerpt(purpose)}.", param="purpose", code="invalid_value")
        asset = await library.from_upload(upload.path, upload.sha256)
    record = await library.files.add(upload.filename, upload.size, purpose, asset.id)
    return JSONResponse(record.openai())


@router.get("/v1/files")
async def list_files(services: ServicesDep) -> JSONResponse:
    records = await services.media.files.list()
    return JSONResponse({"object": "list", "data": [r.openai() for r in records], "has_more": False})


@router.get("/v1/files/{file_id}")
async def get_file(file_id: str, services: ServicesDep) -> JSONResponse:
    record = await services.media.files.get(file_id)
    if record is None:
        raise _not_found(file_id)
    return JSONResponse(record.openai())


@router.get("/v1/files/{file_id}/content", response_model=None)
async def file_content(file_id: str, services: ServicesDep) -> FileResponse:
    """The sanitized video (MP4) the upload became — what the model and Gemini see."""
    library = services.media
    record = await library.files.get(file_id)
    stored = await library.store.get(record.object_id) if record is not None else None
    if stored is None or not await asyncio.to_thread(stored.video.is_file):
        raise _not_found(file_id)
    return FileResponse(stored.video, media_type="video/mp4", filename=f"{file_id}.mp4")


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, services: ServicesDep) -> JSONResponse:
    record = await services.media.remove_file(file_id)
    if record is None:
        raise _not_found(file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})
