"""A local stand-in for Google's Gemini API (REST, v1beta and v1) that the real ``google-genai`` SDK talks to.

Wire format as google-genai 3.x sends and reads it (``google/genai/_api_client.py``, ``files.py``, ``models.py``,
``_extra_utils.prepare_resumable_upload``) and as Google documents it (ai.google.dev/api/files, /api/generate-content):

- ``POST /upload/v1beta/files`` with ``X-Goog-Upload-Protocol: resumable`` and ``X-Goog-Upload-Command: start``
  (size and type in ``X-Goog-Upload-Header-Content-Length`` / ``-Content-Type``, body ``{"file": {...}}``) answers
  with an ``X-Goog-Upload-URL`` header; the SDK then POSTs 8 MiB chunks there with ``X-Goog-Upload-Command: upload``
  (``upload, finalize`` on the last) and ``X-Goog-Upload-Offset``, and WITHOUT the API key (the upload id
  authenticates). Each answer carries ``X-Goog-Upload-Status`` (``active``, then ``final`` with ``{"file": File}``).
- ``GET /v1beta/files/<id>`` → the File (``state`` PROCESSING → ACTIVE, or FAILED with ``error``); ``DELETE`` → ``{}``.
- ``POST /v1beta/models/<model>:generateContent`` → GenerateContentResponse; ``:streamGenerateContent?alt=sse`` →
  ``data: <GenerateContentResponse>`` events separated by blank lines, no ``[DONE]``; the last one has
  ``finishReason`` and the full ``usageMetadata``. ``GET /v1beta/models/<model>`` → a Model.
- Errors: ``{"error": {"code", "message", "status"}}`` (+ ``google.rpc.RetryInfo`` in ``details`` for 429), JSON.
- The key travels in the ``x-goog-api-key`` header; the fake records where else it appears (``key_leaks``).

Scripting, per test: ``latency_s``, ``chunk_delay_s``, ``processing_s`` (or ``finish_processing()``),
``fail_processing``, ``answer`` (text or a function of the request), ``model_version``, ``file_ttl_s``,
``fail(status, times=…, route=…, retry_after=…)``, ``forget(name)`` (a file Gemini no longer has),
``stream_error_after``, ``models``, ``upload_url_has_key``.
Every request is in ``requests`` (``seen(route)``, ``uploads``); the key anywhere but its header in ``key_leaks``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

# Shaped like a real key (AIza + 35 characters) so that pattern-based scrubbing is exercised as well.
FAKE_API_KEY = "AIzaSyFAKE-vchat-test-key-0123456789ab"
REQUEST_LIMIT_BYTES = 20 * 2**20  # Gemini's limit for one generateContent request (inline data included)
CHUNK_SIZE = 8 * 2**20  # the SDK's upload chunk (google/genai/_api_client.py CHUNK_SIZE)
DEFAULT_ANSWER = "A test pattern scrolls while a steady tone plays."
DEFAULT_MODEL_VERSION = "gemini-2.5-flash-preview-09-2025"

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_DEFAULT_MESSAGES = {429: "Resource has been exhausted (e.g. check quota).",
                     500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                     503: "The model is overloaded. Please try again later.",
                     504: "Deadline expired before operation could complete."}


_PATH = re.compile(r"^/(?P<upload>upload/)?(?P<version>v1|v1beta)/(?P<rest>.+)$")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def pick(obj: Any, name: str) -> Any:
    """``obj[name]`` under its snake_case or camelCase spelling (Google's JSON parser accepts both)."""
    if not isinstance(obj, dict):
        return None
    return obj.get(name, obj.get(_camel(name)))


@dataclass(frozen=True)
class SeenRequest:
    """One request as the fake received it (the API key header removed)."""

    method: str
    path: str
    query: dict[str, str]
    route: str  # upload.start, upload.chunk, files.get, files.delete, generate, stream, models.get, unknown
    api_version: str  # v1beta (what the gateway pins) or v1 (google-genai 3.x's default)
    headers: dict[str, str]  # lower-case names, without x-goog-api-key
    body: Any  # parsed JSON, or None (upload chunks, empty bodies)
    body_size: int
    key_in_header: bool  # x-goog-api-key carried the fake's key

    @property
    def parts(self) -> list[dict[str, Any]]:
        """Every part of every content of a generate request."""
        return [part for content in (pick(self.body, "contents") or []) for part in (pick(content, "parts") or [])]

    @property
    def file_uris(self) -> list[str]:
        return [str(pick(pick(part, "file_data"), "file_uri")) for part in self.parts if pick(part, "file_data")]

    @property
    def inline_sizes(self) -> list[int]:
        """Decoded byte sizes of the inline blobs."""
        blobs = [pick(part, "inline_data") for part in self.parts if pick(part, "inline_data")]
        return [len(_bytes(pick(blob, "data"))) for blob in blobs]

    @property
    def texts(self) -> list[str]:
        return [str(part["text"]) for part in self.parts if "text" in part]

    @property
    def video_metadata(self) -> list[dict[str, Any]]:
        return [pick(part, "video_metadata") for part in self.parts if pick(part, "video_metadata")]

    @property
    def roles(self) -> list[str | None]:
        return [pick(content, "role") for content in pick(self.body, "contents") or []]

    @property
    def system_instruction(self) -> str | None:
        found = pick(self.body, "system_instruction")
        return None if found is None else "".join(str(part.get("text", "")) for part in pick(found, "parts") or [])

    @property
    def generation_config(self) -> dict[str, Any]:
        return pick(self.body, "generation_config") or {}


@dataclass
class Failure:
    """A scripted error answer, consumed by the next request whose route matches."""

    status: int
    route: str = "generate"  # generate (both generate routes), stream, upload, files, models, any
    message: str | None = None
    retry_after: float | None = None  # a Retry-After header, seconds
    retry_delay: str | None = None  # a google.rpc.RetryInfo detail, e.g. "2s"

    def matches(self, route: str) -> bool:
        if self.route == "any":
            return True
        if self.route == "generate":
            return route in ("generate", "stream")
        return route == self.route or route.startswith(self.route + ".")


@dataclass
class FakeFile:
    name: str
    mime_type: str
    size: int
    sha256: bytes
    created: datetime
    expires: datetime
    ready_at: float  # monotonic time processing ends
    fails: bool
    display_name: str | None = None

    def state(self) -> str:
        if time.monotonic() < self.ready_at:
            return "PROCESSING"
        return "FAILED" if self.fails else "ACTIVE"

    def resource(self, base_url: str, version: str) -> dict[str, Any]:
        state = self.state()
        body: dict[str, Any] = {
            "name": self.name, "mimeType": self.mime_type, "sizeBytes": str(self.size),
            "createTime": _rfc3339(self.created), "updateTime": _rfc3339(self.created),
            "expirationTime": _rfc3339(self.expires), "sha256Hash": base64.b64encode(self.sha256).decode(),
            "uri": f"{base_url}/{version}/{self.name}", "state": state, "source": "UPLOADED",
        }
        if self.display_name:
            body["displayName"] = self.display_name
        if state == "FAILED":
            body["error"] = {"code": 400, "message": "The video could not be processed."}
        return body


@dataclass
class _Upload:
    size: int
    mime_type: str
    display_name: str | None
    data: bytearray = field(default_factory=bytearray)


def _bytes(value: Any) -> bytes:
    """A proto3 JSON ``bytes`` field: standard or URL-safe base64 (the SDK sends URL-safe), padding optional."""
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    text = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeGemini:
    """``FakeGemini().start()``; point ``genai.Client(api_key=FAKE_API_KEY, http_options={"base_url": fake.url})``."""

    def __init__(self, api_key: str = FAKE_API_KEY) -> None:
        self.api_key = api_key
        # --- the script -------------------------------------------------------------------------------------------
        self.latency_s = 0.0  # before the first byte of a generate answer
        self.chunk_delay_s = 0.0  # between two events of a streamed answer
        self.processing_s = 0.0  # how long an uploaded file stays PROCESSING
        self.fail_processing = False  # files end FAILED instead of ACTIVE
        self.file_ttl_s = 48 * 3600.0  # expirationTime of new files
        self.answer: str | Callable[[SeenRequest], str] = DEFAULT_ANSWER
        self.model_version = DEFAULT_MODEL_VERSION
        self.stream_chunks = 3  # events a streamed answer is split into
        self.stream_error_after: int | None = None  # after that many events, send an error event (503)
        self.models: set[str] | None = None  # None: every model name exists
        self.upload_url_has_key = False  # the upload URL repeats the key as ?key= (as reported for key= callers)
        self.failures: list[Failure] = []
        # --- what happened ----------------------------------------------------------------------------------------
        self.requests: list[SeenRequest] = []
        self.key_leaks: list[str] = []  # places other than the x-goog-api-key header where the key was seen
        self.files: dict[str, FakeFile] = {}
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # --- scripting ----------------------------------------------------------------------------------------------------

    def fail(self, status: int, *, times: int = 1, route: str = "generate", message: str | None = None,
             retry_after: float | None = None, retry_delay: str | None = None) -> None:
        """Answer the next ``times`` requests on ``route`` with ``status`` in Google's error shape."""
        with self._lock:
            self.failures += [Failure(status, route, message, retry_after, retry_delay) for _ in range(times)]

    def finish_processing(self) -> None:
        """End the processing of every file uploaded so far, now: a test steps a file to ACTIVE (or FAILED) by this
        rather than by waiting out ``processing_s``."""
        with self._lock:
            for found in self.files.values():
                found.ready_at = 0.0

    def forget(self, name: str) -> None:
        """Drop a file, as Gemini does when it expires: later requests naming it get 403 PERMISSION_DENIED."""
        with self._lock:
            self.files.pop(name, None)

    # --- observations -------------------------------------------------------------------------------------------------

    def seen(self, *routes: str) -> list[SeenRequest]:
        """The requests on any of ``routes`` (``generate`` covers both generate routes), in arrival order."""
        wanted = {"generate", "stream"} if "generate" in routes else set()
        wanted |= set(routes)
        with self._lock:
            return [r for r in self.requests if r.route in wanted]

    @property
    def uploads(self) -> int:
        """Uploads started (resumable ``start`` requests that were accepted)."""
        return len([r for r in self.seen("upload.start")])

    # --- lifecycle ----------------------------------------------------------------------------------------------------

    def start(self) -> FakeGemini:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving (called on the server's threads) ---------------------------------------------------------------------

    def _next_failure(self, route: str) -> Failure | None:
        with self._lock:
            for index, failure in enumerate(self.failures):
                if failure.matches(route):
                    return self.failures.pop(index)
        return None

    def _sleep(self, seconds: float) -> bool:
        """Wait; False when the fake is stopping (the handler then drops the connection)."""
        return seconds <= 0 or not self._stopping.wait(seconds)

    def _record(self, request: SeenRequest, raw: list[bytes]) -> None:
        needle = self.api_key.encode()
        leaks = [f"{request.route}: {where}" for where, blob in
                 zip(("request line", "headers", "body"), raw, strict=True) if needle in blob]
        with self._lock:
            self.requests.append(request)
            self.key_leaks += leaks

    def _answer_text(self, request: SeenRequest) -> str:
        return self.answer(request) if callable(self.answer) else self.answer

    def _response(self, request: SeenRequest, text: str, *, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        prompt_tokens = sum(len(t.split()) for t in request.texts) + 300 * (len(request.file_uris)
                                                                             + len(request.inline_sizes))
        usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
        if final:
            candidate["finishReason"] = "STOP"
            answer_tokens = len(self._answer_text(request).split())
            usage.update(candidatesTokenCount=answer_tokens, totalTokenCount=prompt_tokens + answer_tokens)
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model_version,
                "responseId": secrets.token_urlsafe(12)}

    def _check_generate(self, request: SeenRequest, model: str) -> tuple[int, dict[str, Any]] | None:
        """Google's own refusals: request too large, an unknown model, a file that is gone or not ACTIVE."""
        if request.body_size > REQUEST_LIMIT_BYTES:
            return 400, _error(400, f"Request payload size exceeds the limit: {REQUEST_LIMIT_BYTES} bytes.")
        if self.models is not None and model not in self.models:
            return 404, _error(404, f"models/{model} is not found for API version {request.api_version}, or is not "
                                    "supported for generateContent.")
        if not pick(request.body, "contents"):
            return 400, _error(400, "* GenerateContentRequest.contents: contents is not specified")
        if any(pick(content, "role") not in (None, "user", "model") for content in pick(request.body, "contents")):
            return 400, _error(400, "Please use a valid role: user, model.")
        try:
            request.inline_sizes  # noqa: B018 (decodes every inline blob)
        except ValueError:
            return 400, _error(400, "Invalid value at 'contents.parts.inline_data.data' (TYPE_BYTES), Base64 "
                                    "decoding failed")
        for uri in request.file_uris:
            match = _PATH.match(uri[len(self.url):]) if uri.startswith(self.url + "/") else None
            if match is None:
                continue  # a YouTube (or other public) URL
            name = match.group("rest")
            with self._lock:
                found = self.files.get(name)
            if found is None:
                return 403, _error(403, f"You do not have permission to access the File {name.split('/')[-1]} "
                                        "or it may not exist.")
            if found.state() != "ACTIVE":
                return 400, _error(400, f"The File {name.split('/')[-1]} is not in an ACTIVE state and usage is "
                                        "not allowed.", status="FAILED_PRECONDITION")
        return None

    def _stream_events(self, request: SeenRequest) -> Iterator[dict[str, Any]]:
        text = self._answer_text(request)
        words = text.split(" ")
        count = max(1, min(self.stream_chunks, len(words)))
        size = -(-len(words) // count)
        pieces = [" ".join(words[i:i + size]) + (" " if i + size < len(words) else "")
                  for i in range(0, len(words), size)]
        for index, piece in enumerate(pieces):
            if self.stream_error_after is not None and index == self.stream_error_after:
                yield _error(503, _DEFAULT_MESSAGES[503])
                return
            yield self._response(request, piece, final=index == len(pieces) - 1)

    def _new_file(self, upload: _Upload) -> FakeFile:
        now = datetime.now(UTC)
        name = "files/" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        found = FakeFile(name=name, mime_type=upload.mime_type, size=upload.size,
                         sha256=hashlib.sha256(upload.data).digest(), created=now,
                         expires=now + timedelta(seconds=self.file_ttl_s),
                         ready_at=time.monotonic() + self.processing_s, fails=self.fail_processing,
                         display_name=upload.display_name)
        with self._lock:
            self.files[name] = found
        return found


def _error(code: int, message: str, *, status: str | None = None, retry_delay: str | None = None,
           details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "status": status or _STATUS_NAMES.get(code, "UNKNOWN")}
    extra = list(details or [])
    if retry_delay is not None:
        extra.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    if extra:
        body["details"] = extra
    return {"error": body}


def _route(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str]:
    """(route, argument, api version): the argument is the model name or the file name (``files/<id>``)."""
    match = _PATH.match(path)
    if match is None:
        return "unknown", "", ""
    upload, version, rest = match.group("upload"), match.group("version"), match.group("rest")
    if upload:
        if rest == "files" and method == "POST":
            return ("upload.chunk" if "upload_id" in query else "upload.start"), "", version
    elif rest.startswith("files/") and method in ("GET", "DELETE"):
        return ("files.get" if method == "GET" else "files.delete"), rest, version
    elif rest.startswith("models/"):
        model = rest[len("models/"):]
        if method == "POST" and model.endswith(":generateContent"):
            return "generate", model.rsplit(":", 1)[0], version
        if method == "POST" and model.endswith(":streamGenerateContent"):
            return "stream", model.rsplit(":", 1)[0], version
        if method == "GET" and ":" not in model:
            return "models.get", model, version
    return "unknown", "", version


def _handler_for(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        raw = b""

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        # --- plumbing ---------------------------------------------------------------------------------------------

        def _send(self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _send_failure(self, failure: Failure) -> None:
            headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
            message = failure.message or _DEFAULT_MESSAGES.get(failure.status, "Request failed.")
            self._send(failure.status, _error(failure.status, message, retry_delay=failure.retry_delay), headers)

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            query = dict(parse_qsl(split.query))
            raw = self.raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            route, arg, version = _route(method, split.path, query)
            body: Any = None
            if raw and route != "upload.chunk":
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
            key = self.headers.get("x-goog-api-key")
            headers = {name.lower(): value for name, value in self.headers.items() if name.lower() != "x-goog-api-key"}
            seen = SeenRequest(method, split.path, query, route, version, headers, body, len(raw),
                               key == fake.api_key)
            header_blob = "\n".join(f"{n}: {v}" for n, v in headers.items()).encode()
            fake._record(seen, [self.path.encode(), header_blob, raw])

            if route != "upload.chunk" and key != fake.api_key:  # the upload id authenticates chunks
                self._send(400, _error(400, "API key not valid. Please pass a valid API key.", details=[
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com"}]))
                return
            failure = fake._next_failure(route)
            if route in ("generate", "stream") and not fake._sleep(fake.latency_s):
                self.close_connection = True
                return
            if failure is not None:
                self._send_failure(failure)
                return
            handler = getattr(self, "_" + route.replace(".", "_"), None)
            if handler is None:
                self._send(404, _error(404, f"Method not found: {method} {split.path}"))
                return
            handler(seen, arg)

        # --- routes -----------------------------------------------------------------------------------------------

        def _upload_start(self, seen: SeenRequest, _: str) -> None:
            if seen.headers.get("x-goog-upload-protocol") != "resumable" or \
                    seen.headers.get("x-goog-upload-command") != "start":
                self._send(400, _error(400, "Expected a resumable upload start request."))
                return
            try:
                size = int(seen.headers["x-goog-upload-header-content-length"])
            except (KeyError, ValueError):
                self._send(400, _error(400, "Missing X-Goog-Upload-Header-Content-Length."))
                return
            meta = pick(seen.body, "file") or {}
            upload_id = secrets.token_urlsafe(24)
            session = f"{fake.url}/upload/{seen.api_version}/files?upload_id={upload_id}"
            with fake._lock:
                fake._uploads[upload_id] = _Upload(
                    size, seen.headers.get("x-goog-upload-header-content-type") or "application/octet-stream",
                    pick(meta, "display_name"))
            self._send(200, None, {
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-URL": f"{session}&upload_protocol=resumable"
                                     + (f"&key={fake.api_key}" if fake.upload_url_has_key else ""),
                "X-Goog-Upload-Control-URL": session,
                "X-Goog-Upload-Chunk-Granularity": str(CHUNK_SIZE),
            })

        def _upload_chunk(self, seen: SeenRequest, _: str) -> None:
            with fake._lock:
                upload = fake._uploads.get(seen.query["upload_id"])
            if upload is None:
                self._send(404, _error(404, "No such upload session."))
                return
            commands = {c.strip() for c in seen.headers.get("x-goog-upload-command", "").split(",")}
            if "query" in commands:
                self._send(200, None, {"X-Goog-Upload-Status": "active",
                                       "X-Goog-Upload-Size-Received": str(len(upload.data))})
                return
            if int(seen.headers.get("x-goog-upload-offset", "-1")) != len(upload.data):
                self._send(400, _error(400, "Upload offset does not match the bytes received."),
                           {"X-Goog-Upload-Status": "active"})
                return
            upload.data += self.raw
            if "finalize" not in commands:
                self._send(200, None, {"X-Goog-Upload-Status": "active"})
                return
            with fake._lock:
                fake._uploads.pop(seen.query["upload_id"], None)
            if len(upload.data) != upload.size:
                self._send(400, _error(400, f"Received {len(upload.data)} bytes, expected {upload.size}."),
                           {"X-Goog-Upload-Status": "final"})
                return
            found = fake._new_file(upload)
            self._send(200, {"file": found.resource(fake.url, seen.api_version)}, {"X-Goog-Upload-Status": "final"})

        def _files_get(self, seen: SeenRequest, name: str) -> None:
            with fake._lock:
                found = fake.files.get(name)
            if found is None:
                self._send(403, _error(403, f"You do not have permission to access the File {name.split('/')[-1]} "
                                            "or it may not exist."))
                return
            self._send(200, found.resource(fake.url, seen.api_version))

        def _files_delete(self, _: SeenRequest, name: str) -> None:
            with fake._lock:
                found = fake.files.pop(name, None)
            if found is None:
                self._send(403, _error(403, f"You do not have permission to access the File {name.split('/')[-1]} "
                                            "or it may not exist."))
                return
            self._send(200, {})

        def _models_get(self, seen: SeenRequest, model: str) -> None:
            if fake.models is not None and model not in fake.models:
                self._send(404, _error(404, f"models/{model} is not found for API version {seen.api_version}."))
                return
            self._send(200, {"name": f"models/{model}", "version": fake.model_version, "displayName": model,
                             "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                             "supportedGenerationMethods": ["generateContent", "countTokens"]})

        def _generate(self, seen: SeenRequest, model: str) -> None:
            refused = fake._check_generate(seen, model)
            if refused is not None:
                self._send(*refused)
                return
            self._send(200, fake._response(seen, fake._answer_text(seen), final=True))

        def _stream(self, seen: SeenRequest, model: str) -> None:
            refused = fake._check_generate(seen, model)
            if refused is not None:
                self._send(*refused)
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for index, event in enumerate(fake._stream_events(seen)):
                    if index and not fake._sleep(fake.chunk_delay_s):
                        self.close_connection = True
                        return
                    self._chunk(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
                self._chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


@pytest.fixture(name="fake_gemini")
def fake_gemini_fixture() -> Iterator[FakeGemini]:
    """``fake_gemini``: a fake Gemini on 127.0.0.1, stopped after the test. A test module makes it available with
    ``from tests.support.fake_gemini import fake_gemini_fixture  # noqa: F401`` (the fixture is named
    ``fake_gemini``; the import's other name keeps ruff's F811 quiet where tests take it as a parameter)."""
    with FakeGemini() as fake:
        yield fake
