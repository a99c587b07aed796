"""Streams a multipart upload straight to disk with a byte cap (Starlette's form parser would spool it whole)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect

from gateway.errors import ClientGone, InvalidRequest, MediaTooLarge, excerpt, param_name
from gateway.media.space import MakeRoom, Spool, full_disk_refused

_MAX_FIELD_BYTES = 4096
# What a body may carry besides the file's bytes: boundaries, part headers, a few short fields (purpose).
_MULTIPART_ALLOWANCE = 64 * 1024


@dataclass(frozen=True)
class Upload:
    """The file part of a multipart upload, on disk, plus the form's small text fields."""

    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str
    fields: dict[str, str]


@dataclass
class _FileState:
    size: int = 0
    filename: str = ""
    content_type: str = ""
    files: int = 0


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    text: bytearray = field(default_factory=bytearray)


async def receive_upload(request: Request, dest_dir: Path, max_bytes: int, file_field: str = "file",
                         make_room: MakeRoom | None = None) -> Upload:
    """Parse ``multipart/form-data`` as it arrives; the file field goes to ``dest_dir`` (deleted on any error).

    When the disk fills up, ``make_room`` is asked once to free what the rest may need; then InsufficientStorage.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Send the file as multipart/form-data with a 'file' field.", param=file_field,
                             code="invalid_upload")

    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > max_bytes + _MULTIPART_ALLOWANCE:
        # Refused before a byte is read: otherwise the client's whole gigabyte streams in just to be thrown away.
        raise MediaTooLarge(f"The upload announces {int(announced)} bytes, more than the limit of {max_bytes} bytes.")

    target = dest_dir / f"upload-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    pending = bytearray()
    fields: dict[str, str] = {}
    state = _FileState()
    current = _Part()
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        nonlocal current
        current = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        current.headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(current.headers.get(b"content-disposition", b""))
        current.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = disposition.get(b"filename")
        current.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        current.content_type = current.headers.get(b"content-type", b"").decode("latin-1")
        if current.filename is not None:
            state.files += 1
            # A second file (or one under another name) is refused now, not streamed into a text field's buffer.
            if current.name != file_field or state.files > 1:
                raise InvalidRequest(f"Send exactly one file, in the '{file_field}' field.", param=file_field,
                                     code="invalid_upload")
            state.filename = current.filename
            state.content_type = current.content_type

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if current.name == file_field and current.filename is not None and state.files == 1:
            state.size += len(chunk)
            if state.size > max_bytes:
                raise MediaTooLarge(f"The upload is larger than the limit of {max_bytes} bytes.")
            digest.update(chunk)
            pending.extend(chunk)
        elif len(current.text) + len(chunk) <= _MAX_FIELD_BYTES:
            current.text.extend(chunk)
        else:
            raise InvalidRequest(f"The form field {excerpt(current.name)} is too long.", param=param_name(current.name),
                                 code="invalid_upload")

    def on_part_end() -> None:
        if current.filename is None and current.name:
            fields[current.name] = current.text.decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    with full_disk_refused(dest_dir):
        handle = await asyncio.to_thread(target.open, "wb", 0)
    announced = request.headers.get("content-length", "")
    spool = Spool(handle, target, min(int(announced), max_bytes) if announced.isdigit() else max_bytes, make_room)
    try:
        async for chunk in _body(request):
            try:
                parser.write(chunk)
            except MultipartParseError:
                raise InvalidRequest("The multipart/form-data body is malformed.", param=file_field,
                                     code="invalid_upload") from None
            if pending:
                data = bytes(pending)
                pending.clear()
                await spool.append(data, threaded=True)
        parser.finalize()  # checks nothing (python-multipart 0.0.x): the end state is checked below
        await asyncio.to_thread(handle.close)
        if parser.state != MultipartState.END:
            raise InvalidRequest("The multipart/form-data body ended before its closing boundary.",
                                 param=file_field, code="invalid_upload")
        if state.files != 1:
            raise InvalidRequest(f"Send exactly one file, in the '{file_field}' field.", param=file_field,
                                 code="invalid_upload")
        if state.size == 0:
            raise InvalidRequest("The uploaded file is empty.", param=file_field, code="invalid_upload")
    except BaseException:
        handle.close()
        target.unlink(missing_ok=True)
        raise
    return Upload(path=target, filename=state.filename or "upload", content_type=state.content_type,
                  size=state.size, sha256=digest.hexdigest(), fields=fields)


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The body's chunks; a client that leaves mid-upload is ``ClientGone`` (499, logged as such), not a 500."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise ClientGone("The client closed the connection during the upload.") from None
