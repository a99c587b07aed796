"""A scriptable HTTP origin on loopback: files, pages, redirects, trickling or unannounced bodies; counts hits."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    headers: dict[str, str] | None = None
    send_length: bool = True  # False: no Content-Length, body ends when the connection closes
    chunk: int = 64 * 1024
    delay_s: float = 0.0  # pause before each chunk (a trickling server)
    before: Callable[[], None] | None = None  # run before answering (e.g. to block until released)


class Origin:
    """``origin.file("/a.mp4", data)``, ``origin.redirect("/r", "http://…")``, ``origin.url("/a.mp4")``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                with origin._lock:
                    origin.hits[path] += 1
                route = origin.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.before is not None:
                    route.before()
                body = route.body
                status = route.status
                range_header = self.headers.get("Range")
                if range_header and status == 200 and route.send_length and range_header.startswith("bytes="):
                    start_s, _, end_s = range_header[6:].partition("-")
                    start = int(start_s or 0)
                    end = int(end_s) if end_s else len(body) - 1
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
                    body = body[start:end + 1]
                else:
                    self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Accept-Ranges", "bytes")
                for name, value in (route.headers or {}).items():
                    self.send_header(name, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                if head:
                    return
                try:
                    for offset in range(0, len(body), route.chunk):
                        if route.delay_s:
                            time.sleep(route.delay_s)
                        self.wfile.write(body[offset:offset + route.chunk])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if not route.send_length:
                    self.close_connection = True

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = host
        # A short poll interval: shutdown() waits for it, and tests start and stop many origins.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def file(self, path: str, body: bytes, content_type: str = "video/mp4", **options: object) -> str:
        self.routes[path] = Route(body=body, content_type=content_type, **options)  # type: ignore[arg-type]
        return self.url(path)

    def page(self, path: str, html: str) -> str:
        return self.file(path, html.encode(), "text/html; charset=utf-8")

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = Route(status=status, headers={"Location": location})
        return self.url(path)

    def start(self) -> Origin:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
