"""The Gemini API key out of every text the backend lets go: error messages, its own logs, the transport's logs."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

# Loggers that write URLs or response headers (an upload URL Gemini hands out may repeat the key).
_TRANSPORT_LOGGERS = ("httpx2", "httpcore2.connection", "httpcore2.http11", "httpcore2.http2", "httpcore2.proxy",
                      "httpcore2.socks")
_KEY_SHAPES = re.compile(r"AIza[0-9A-Za-z_\-]{35}|(?<=key=)[^&\s\"'<>]+")


def scrub(text: str, key: str) -> str:
    """``text`` without the key, nor anything shaped like a Google API key or a ``key=`` parameter."""
    if key:
        text = text.replace(key, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)


class KeyScrubber(logging.Filter):
    """Rewrites log records that carry the key (httpx2 logs every URL, and an upload URL may repeat the key)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message, self.key)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


@contextlib.contextmanager
def scrubbed_transport_logs(key: str) -> Iterator[None]:
    """While the app runs, the key is scrubbed from the records of httpx2 (it logs every URL) and httpcore2 (it logs
    response headers at DEBUG). Those loggers are process-wide, so the lifespan that owns the key adds the filters
    and takes them off again: a client factory leaves logging alone, and apps built one after another (tests,
    benchmarks) do not pile filters up."""
    scrubber = KeyScrubber(key)
    loggers = [logging.getLogger(name) for name in _TRANSPORT_LOGGERS]
    for log in loggers:
        log.addFilter(scrubber)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(scrubber)
