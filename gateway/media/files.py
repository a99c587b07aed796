"""Uploaded files (the OpenAI Files API's records), each pointing at a cached video object."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.media.store import write_json_atomic

_FILE_ID = re.compile(r"^file-[A-Za-z0-9]{24}$")


@dataclass(frozen=True)
class FileRecord:
    """One uploaded file as the Files API describes it, plus the video object it became."""

    id: str
    filename: str
    bytes: int
    created_at: int
    purpose: str
    object_id: str

    def openai(self) -> dict[str, object]:
        """The OpenAI ``file`` object."""
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed"}


class FileRegistry:
    """File records in ``<root>/files/<id>.json``; ids are random (``file-`` + 24 characters)."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.dir = root / "files"
        self.tmp_dir = tmp_dir

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def new_id() -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "file-" + "".join(secrets.choice(alphabet) for _ in range(24))

    async def add(self, filename: str, size: int, purpose: str, object_id: str) -> FileRecord:
        record = FileRecord(id=self.new_id(), filename=_clean_name(filename), bytes=size,
                            created_at=int(time.time()), purpose=purpose, object_id=object_id)
        await asyncio.to_thread(write_json_atomic, self._path(record.id), asdict(record), self.tmp_dir)
        return record

    async def get(self, file_id: str) -> FileRecord | None:
        if not _FILE_ID.match(file_id):
            return None
        try:
            data = json.loads(await asyncio.to_thread(self._path(file_id).read_text))
        except (OSError, ValueError):
            return None
        return FileRecord(**data)

    async def list(self) -> list[FileRecord]:
        def read_all() -> list[FileRecord]:
            records = []
            for path in self.dir.glob("file-*.json"):
                try:
                    records.append(FileRecord(**json.loads(path.read_text())))
                except (OSError, ValueError, TypeError):
                    continue
            return sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)

        return await asyncio.to_thread(read_all)

    async def remove(self, file_id: str) -> FileRecord | None:
        record = await self.get(file_id)
        if record is not None:
            await asyncio.to_thread(self._path(file_id).unlink, True)
        return record

    def _path(self, file_id: str) -> Path:
        return self.dir / f"{file_id}.json"


def _clean_name(name: str) -> str:
    # Keep only the last path component and printable characters: the name is shown back to users.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable())[:255]
    return cleaned or "upload"
