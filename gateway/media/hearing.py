"""A stored video's speech, heard once: when it is built, or on its next question if it was stored before
transcription was turned on (or before ``always`` asked for speech over its subtitles).

An object whose speech was heard holds ``heard.json`` (with or without a transcript: a video of music only is not
transcribed again on every question); one whose transcription failed or ran out of time is marked too, since each
try costs up to VCHAT_ASR_TIMEOUT_S. A question that leaves mid-way kills the worker and marks nothing, so the next
one tries again. Questions about the same object wait for one transcription.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from gateway.errors import InsufficientStorage
from gateway.media.speech import Asr, TranscribeMode, transcribe_or_none, wanted
from gateway.media.store import StoredObject, write_json_atomic
from gateway.media.subtitles import TextLimits, Transcript
from gateway.media.subtitles import load as load_transcript
from gateway.metrics import Metrics

TRANSCRIPT = "transcript.json"  # beside video.mp4 and facts.json in a cached object
HEARD = "heard.json"


class Hearing:
    """Runs the speech worker for stored objects that need it, one at a time per object."""

    def __init__(self, asr: Asr | None, mode: TranscribeMode, limits: TextLimits, metrics: Metrics,
                 temp_dir: Callable[[], AbstractAsyncContextManager[Path]]) -> None:
        self.asr = asr
        self.mode = mode
        self.limits = limits
        self.metrics = metrics
        self.temp_dir = temp_dir
        self._busy: dict[str, asyncio.Lock] = {}

    def needed(self, has_audio: bool, timed_text: Transcript | None) -> bool:
        """Whether a video with ``timed_text`` so far is to be heard (its transcript is not already speech)."""
        return (self.asr is not None and has_audio and wanted(self.mode, timed_text)
                and (timed_text is None or timed_text.source != "asr"))

    async def hear(self, video: Path, work: Path) -> Transcript | None:
        """The speech of ``video`` (None: no speech, or the worker failed; logged), timed as the transcribe stage."""
        assert self.asr is not None
        with self.metrics.media_stage("transcribe"):
            return await transcribe_or_none(video, work, self.asr, self.limits)

    @staticmethod
    def mark(folder: Path, heard: Transcript | None, work: Path) -> None:
        """Record in ``folder`` (blocking) that its video was heard, and the transcript when there is one."""
        if heard is not None:
            write_json_atomic(folder / TRANSCRIPT, heard.to_json(), work)
        write_json_atomic(folder / HEARD, {"source": "asr", "transcript": heard is not None}, work)

    async def stored(self, stored: StoredObject, has_audio: bool, timed_text: Transcript | None) -> Transcript | None:
        """The transcript of an object already stored: ``timed_text``, or its speech when it still needs hearing."""
        if not self.needed(has_audio, timed_text) or await asyncio.to_thread((stored.dir / HEARD).exists):
            return timed_text
        lock = self._busy.setdefault(stored.id, asyncio.Lock())
        try:
            async with lock:
                if await asyncio.to_thread((stored.dir / HEARD).exists):  # heard while this one waited
                    return await asyncio.to_thread(load_transcript, stored.dir / TRANSCRIPT)
                async with self.temp_dir() as work:
                    heard = await self.hear(stored.video, work)
                    # Evicted meanwhile, or a full disk: the answer still gets what was heard.
                    with contextlib.suppress(OSError, InsufficientStorage):
                        await asyncio.to_thread(self.mark, stored.dir, heard, work)
                return heard or timed_text
        finally:
            if not lock.locked():
                self._busy.pop(stored.id, None)
