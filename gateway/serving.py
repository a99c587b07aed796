"""Serves the app with uvicorn under the connection limits from settings, including a deadline for headers
(``serve``: what ``vchat serve`` and ``python -m gateway`` run)."""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.app import create_app
from gateway.logs import configure_logging
from vchat_settings import Settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus what it lacks: a connection must send a request's full headers within
    ``header_timeout_s`` of opening (or of its first byte after a keep-alive pause), else it is closed. Without
    this, a connection that never sends anything, or trickles a header byte now and then, stays open for good."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_config(app: object, settings: Settings, **overrides: object) -> uvicorn.Config:
    """The uvicorn configuration the gateway runs under (the CLI and the tests' live gateways alike)."""
    protocol = type("GatewayHttpProtocol", (HeaderDeadlineProtocol,),
                    {"header_timeout_s": settings.http_header_timeout_s})
    options: dict[str, object] = {
        "host": settings.host, "port": settings.port, "log_config": None, "access_log": False,
        "http": protocol, "timeout_keep_alive": settings.http_keepalive_s,
        "limit_concurrency": settings.http_max_connections, "timeout_graceful_shutdown": 5, **overrides,
    }
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]


def serve(settings: Settings) -> None:
    """Runs the gateway until SIGINT/SIGTERM: logging configured, the app built, uvicorn serving it."""
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()
