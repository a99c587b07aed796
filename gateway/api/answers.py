"""Turns perception events into OpenAI ``chat.completion.chunk`` objects (``wire.Chunk``); a non-streamed answer
is the same chunks folded by the envelope, so streaming and non-streaming share one path."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.api.wire import Chunk, Envelope, GeminiReport, Perception, RoundRecord, TokenCount, Usage
from gateway.media.library import Asset, LinkedVideo
from gateway.perception.loop import LoopRequest, Piece, Replying, RoundFinished, RoundStarted
from gateway.perception.merge import GeminiFinished, GeminiText, MergedEvent, MergeMode, Notice, Section


def _span_text(spans: tuple[tuple[float, float], ...]) -> str:
    return ", ".join(f"{start:.1f}–{end:.1f} s" for start, end in spans)


class AnswerBuilder:
    """Chunks for one answer: earlier rounds as ``reasoning_content``, the last round's ``<answer>`` as content."""

    def __init__(self, model: str, asset: Asset | LinkedVideo, req: LoopRequest,
                 merged: MergeMode | None = None, video_seconds: float | None = None) -> None:
        self.envelope = Envelope(model)
        self.asset = asset
        self.req = req
        self.rounds: list[RoundRecord] = []
        self.usage = Usage.of(0, 0)
        self.finish_reason: str | None = None
        self.warnings: list[str] = []
        self.merged = merged
        self.video_seconds = video_seconds
        self.sources: list[str] = []
        self.gemini: GeminiReport | None = None
        self._content_started = False
        self._evidence_started = False
        self._subtitles: dict[int, list[dict[str, Any]]] = {}  # each round's subtitle lines, by round number
        if isinstance(asset, Asset) and asset.transcript is not None and req.subtitles != "off":
            self.warnings.extend(asset.transcript.notes)

    def start(self) -> Chunk:
        return self.envelope.start()

    def accepted(self) -> Chunk:
        """The first thing a streamed answer says, as soon as the video is accepted and the question admitted: a
        line of reasoning, so a client shows progress at once instead of waiting for round 1's first token."""
        rounds = f"{self.req.iterations} round{'s' if self.req.iterations != 1 else ''}"
        if isinstance(self.asset, LinkedVideo):
            return self.envelope.reasoning(f"Watching the video at {self.asset.page_url}.\n")
        facts = self.asset.facts
        return self.envelope.reasoning(f"Watching the video ({facts.duration_s:.1f} s, "
                                       f"{facts.width}x{facts.height}) in {rounds}.\n")

    def on_event(self, event: MergedEvent) -> list[Chunk]:
        if isinstance(event, RoundStarted):
            return self._started(event)
        if isinstance(event, Replying):
            if self.rounds and self.rounds[-1].round == event.round:
                self.rounds[-1] = self.rounds[-1].model_copy(update={"first_token_seconds": event.seconds})
            return []
        if isinstance(event, Piece):
            if event.channel == "glue":
                return []
            if event.channel == "content":
                # An earlier round's answer is summarised when the round ends ("→ answer B; looking closer at …").
                return self._content(event.text) if event.round == self.req.iterations else []
            return [self.envelope.reasoning(event.text)]
        if isinstance(event, RoundFinished):
            return self._finished(event)
        if isinstance(event, Section):
            gap = "\n\n" if self._content_started else ""
            return self._content(f"{gap}**{event.label}:** ")
        if isinstance(event, GeminiText):
            if event.role == "content":
                return self._content(event.text)
            heading = "" if self._evidence_started else "\nGemini's notes for the final round:\n"
            self._evidence_started = True
            return [self.envelope.reasoning(heading + event.text)]
        if isinstance(event, GeminiFinished):
            answer = event.answer
            self.gemini = GeminiReport(
                model_version=answer.model_version, video_via=answer.video_via, role=event.role,
                usage=TokenCount(prompt_tokens=answer.usage.prompt_tokens,
                                 completion_tokens=answer.usage.candidates_tokens))
            if "gemini" not in self.sources:
                self.sources.append("gemini")
            return [self.envelope.reasoning("\n")] if event.role == "evidence" else []
        assert isinstance(event, Notice)
        self.warnings.append(event.text)
        return [self.envelope.reasoning(f"Note: {event.text}\n")]

    def _content(self, text: str) -> list[Chunk]:
        self._content_started = True
        return [self.envelope.content(text)]

    def _started(self, event: RoundStarted) -> list[Chunk]:
        if self.rounds and self.rounds[-1].round == event.round:
            # The round is being retried with fewer or smaller frames (vLLM's encoder cache was too small).
            self.rounds.pop()
            self.warnings.append(f"Round {event.round} was retried with fewer or smaller frames to fit vLLM.")
        self.warnings.extend(note for note in event.notes if note not in self.warnings)
        self._subtitles[event.round] = [dataclasses.asdict(line) for line in event.subtitles]
        self.rounds.append(RoundRecord(
            round=event.round, frames=len(event.times), frame_times=list(event.times),
            sample_fps=event.sample_fps, segment_fps=event.segment_fps, frame_size=[event.width, event.height],
            visual_tokens=event.visual_tokens, dense_segments=[list(s) for s in event.spans_in],
            frames_seconds=event.frames_seconds,
        ))
        first, last = (event.times[0], event.times[-1]) if event.times else (0.0, 0.0)
        text = f"Round {event.round}/{self.req.iterations}: {len(event.times)} frames, {first:.1f}–{last:.1f} s"
        if event.spans_in:
            text += f", denser in {_span_text(event.spans_in)}"
        return [self.envelope.reasoning(text + ".\n")]

    def _finished(self, event: RoundFinished) -> list[Chunk]:
        record = self.rounds[-1] = self.rounds[-1].model_copy(update={
            "finished": True, "answer": event.answer, "segments": [list(s) for s in event.segments],
            "finish_reason": event.finish_reason, "seconds": event.seconds,
            "usage": TokenCount(prompt_tokens=event.usage.prompt_tokens,
                                completion_tokens=event.usage.completion_tokens),
        })
        if "local" not in self.sources:
            self.sources.insert(0, "local")
        self.usage = Usage.of(self.usage.prompt_tokens + event.usage.prompt_tokens,
                              self.usage.completion_tokens + event.usage.completion_tokens)
        if event.last:
            self.finish_reason = event.finish_reason or "stop"
            return []
        if not event.segments:
            self.warnings.append(f"Round {event.round} named no usable time segments; the next round samples "
                                 "the whole video uniformly.")
        summary = f"\n→ answer {record.answer or '(none)'}"
        if event.segments:
            summary += f"; looking closer at {_span_text(event.segments)}"
        return [self.envelope.reasoning(summary + ".\n\n")]

    def perception(self) -> Perception:
        grounded = next((r.segments for r in reversed(self.rounds) if r.segments), [])
        return Perception(video=_video(self.asset), video_seconds=self.video_seconds, rounds=self.rounds,
                          segments=grounded, sources=self.sources, merge=self.merged, gemini=self.gemini,
                          model=self.envelope.model, warnings=self.warnings, transcript=self._transcript())

    def _transcript(self) -> dict[str, Any] | None:
        """The video's timed text as the rounds used it: where it came from, and each round's lines."""
        if not isinstance(self.asset, Asset) or self.asset.transcript is None:
            return None
        transcript = self.asset.transcript
        return {"source": transcript.source, "language": transcript.language, "lines": len(transcript.lines),
                "in_prompt": self.req.subtitles != "off",
                "rounds": [{"round": number, "lines": lines} for number, lines in sorted(self._subtitles.items())]}

    def finish(self, include_usage: bool) -> list[Chunk]:
        chunks = [self.envelope.chunk(None, self.finish_reason or "stop", perception=self.perception())]
        return [*chunks, self.envelope.usage(self.usage)] if include_usage else chunks


def _video(video: Asset | LinkedVideo) -> dict[str, Any]:
    """The video facts; a YouTube video Gemini watched by its URL was not fetched, so only where it is is known."""
    if isinstance(video, LinkedVideo):
        return {"id": video.id, "source": "page", "source_host": "www.youtube.com", "url": video.page_url}
    return {"id": video.id, **dataclasses.asdict(video.facts)}
