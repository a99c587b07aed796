"""Videos too large to send inline, uploaded through Gemini's Files API: one upload per asset, joined by concurrent
questions, waited on until ``ACTIVE`` and reused (in memory) while Gemini keeps the file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google import genai
from google.genai import types

from gateway.backends.gemini.config import GeminiConfig
from gateway.backends.gemini.deadline import Deadline
from gateway.backends.gemini.errors import RETRY_AFTER_S, GeminiRefused, summary
from gateway.backends.gemini.retries import retrying
from gateway.backends.gemini.scrub import scrub
from gateway.errors import BackendTimeout
from gateway.media.library import Asset

logger = logging.getLogger("gateway.backends.gemini")  # the package's one logger, named as before its split

FILE_LIFETIME = timedelta(hours=48)  # how long Gemini keeps an uploaded file
_EXPIRY_MARGIN = timedelta(minutes=15)  # a cached file this close to expiry is uploaded again
_POLL_FIRST_S, _POLL_MAX_S = 0.2, 5.0


@dataclass(frozen=True)
class RemoteFile:
    """An asset's copy at Gemini: the name to poll or delete, the URI a request cites, until when it lives."""

    name: str
    uri: str
    mime_type: str
    expires: datetime

    def usable(self) -> bool:
        return datetime.now(UTC) + _EXPIRY_MARGIN < self.expires


class Uploads:
    """The backend's uploaded files (asset id → its copy) and the uploads in flight; the client is the backend's."""

    def __init__(self, client: genai.Client, config: GeminiConfig) -> None:
        self.config = config
        self._client = client
        self._files: dict[str, RemoteFile] = {}  # asset id → its uploaded copy
        self._flights: dict[str, asyncio.Task[RemoteFile]] = {}  # asset id → the upload in progress

    async def remote_file(self, asset: Asset, deadline: Deadline) -> RemoteFile:
        """The asset's uploaded copy: cached, joined while another question uploads it, or uploaded now."""
        cached = self._files.get(asset.id)
        if cached is not None and cached.usable():
            return cached
        flight = self._flights.get(asset.id)
        if flight is None:
            flight = asyncio.create_task(self._upload(asset), name=f"gemini-upload-{asset.id[:12]}")
            self._flights[asset.id] = flight
            flight.add_done_callback(lambda done: self._landed(asset.id, done))
        async with asyncio.timeout(deadline.budget()):
            # Shielded: a question that gives up does not cancel the upload the others (and later ones) wait for.
            return await asyncio.shield(flight)

    def forget(self, asset_id: str) -> None:
        """Drop the asset's copy (Gemini lost it): the next question uploads it again."""
        self._files.pop(asset_id, None)

    async def aclose(self) -> None:
        """Cancel uploads still in flight."""
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)

    def _landed(self, asset_id: str, flight: asyncio.Task[RemoteFile]) -> None:
        if self._flights.get(asset_id) is flight:
            del self._flights[asset_id]
        if not flight.cancelled() and flight.exception() is not None:
            logger.info("gemini upload failed", extra={"video": asset_id[:12],
                                                       "gemini_error": self._scrub(summary(flight.exception()))})

    async def _upload(self, asset: Asset) -> RemoteFile:
        deadline, started = Deadline(self.config.upload_ready_timeout_s), time.monotonic()
        upload_config = types.UploadFileConfig(mime_type="video/mp4", display_name=f"vchat-{asset.id[:16]}")
        try:
            found = await retrying(lambda: self._client.aio.files.upload(file=asset.video, config=upload_config),
                                   deadline, self.config, cap=None)
            name, pause = found.name or "", _POLL_FIRST_S
            while found.state == types.FileState.PROCESSING:
                await asyncio.sleep(min(pause, deadline.budget()))
                pause = min(pause * 1.5, _POLL_MAX_S)
                found = await retrying(lambda: self._client.aio.files.get(name=name), deadline, self.config,
                                       cap=self.config.timeout_s)
        except TimeoutError:
            raise BackendTimeout(f"Gemini did not finish processing the video within "
                                 f"{self.config.upload_ready_timeout_s:g} s.", retry_after=RETRY_AFTER_S) from None
        if found.state != types.FileState.ACTIVE or not found.uri:
            reason = found.error.message if found.error and found.error.message else f"state {found.state}"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.aio.files.delete(name=name), self.config.timeout_s)
            raise GeminiRefused(f"Gemini could not process the video ({self._scrub(reason)}).",
                                code="gemini_video_failed")
        remote = RemoteFile(name, found.uri, found.mime_type or "video/mp4",
                            found.expiration_time or datetime.now(UTC) + FILE_LIFETIME)
        self._files = {key: kept for key, kept in self._files.items() if kept.usable()} | {asset.id: remote}
        logger.info("video uploaded to gemini", extra={"video": asset.id[:12], "gemini_file": name,
                                                       "elapsed_s": round(time.monotonic() - started, 3)})
        return remote

    def _scrub(self, text: str) -> str:
        return scrub(text, self.config.api_key.get_secret_value())
