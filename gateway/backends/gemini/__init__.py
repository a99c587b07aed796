"""The Gemini backend: one question about one video (or a plain chat) to Google Gemini, through google-genai.

The video goes the cheapest way that works: the original YouTube URL as ``file_data.file_uri`` (nothing uploaded),
inline bytes when the sanitized mp4 keeps the request under Gemini's 20 MB limit, otherwise a Files API upload that
is waited on until ``ACTIVE`` and reused (per asset, in memory) while the file lives. Calls are retried for
408/429/5xx honouring ``Retry-After``, bounded by the caller's deadline; SDK and transport errors become the
gateway's errors at this package's edge, with the API key scrubbed from every text that leaves it.

    config.py    what the backend needs from the settings, and the SDK client built from it
    answers.py   what the backend hands back (answers, stream events, usage) and reads out of Gemini's chunks
    backend.py   ``GeminiBackend``: the questions, how the video is sent, streaming
    uploads.py   the Files API: one upload per asset, shared by concurrent questions, reused while it lives
    retries.py   the per-call timeout and retry policy under the caller's deadline
    deadline.py  the caller's deadline, as every call and retry sees it
    errors.py    SDK / transport / timeout errors → ``gateway.errors`` (the mapping is in its docstring)
    scrub.py     the API key out of error texts and the process-wide transport logs
"""

from gateway.backends.gemini.answers import (
    Conversation,
    GeminiAnswer,
    GeminiDelta,
    GeminiDone,
    GeminiEvent,
    GeminiUsage,
    VideoVia,
)
from gateway.backends.gemini.backend import GeminiBackend
from gateway.backends.gemini.config import GeminiConfig, MediaResolution, make_client
from gateway.backends.gemini.errors import GeminiRefused
from gateway.backends.gemini.scrub import KeyScrubber, scrubbed_transport_logs

__all__ = [
    "Conversation",
    "GeminiAnswer",
    "GeminiBackend",
    "GeminiConfig",
    "GeminiDelta",
    "GeminiDone",
    "GeminiEvent",
    "GeminiRefused",
    "GeminiUsage",
    "KeyScrubber",
    "MediaResolution",
    "VideoVia",
    "make_client",
    "scrubbed_transport_logs",
]
