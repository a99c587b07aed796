"""The gateway's one error tree; every error a client can see is one of these, rendered by ``api.handlers``.

    VChatError                       (500 api_error / internal_error)
    ├── InvalidRequest               (400 invalid_request_error)
    │   ├── RequestValidationFailed  (422 invalid_request_error / invalid_value)
    │   ├── RequestTooLarge          (413 invalid_request_error / request_too_large)
    │   ├── ModelLimitExceeded       (400: vLLM refused a request over one of its limits, carried as ``limit``)
    │   │   ├── EncoderCacheExceeded (400 / rejected_by_model_server: the frames exceed the encoder cache)
    │   │   └── ContextExceeded      (400 / context_length_exceeded: prompt and reply exceed the context)
    │   └── MediaRejected            (400 invalid_request_error / invalid_video, or a narrower code)
    │       ├── UrlNotAllowed        (400 / url_not_allowed)
    │       ├── MediaFetchFailed     (400 / video_fetch_failed)
    │       ├── MediaTimeout         (408 / video_fetch_timeout)
    │       ├── MediaTooLarge        (413 / video_too_large, video_too_long, frame_too_large)
    │       └── NotAVideo            (415 / not_a_video)
    ├── AuthenticationFailed         (401 authentication_error / invalid_api_key)
    ├── PermissionDenied             (403 permission_error)
    ├── NotFound                     (404 invalid_request_error / not_found)
    │   └── ModelNotFound            (404 invalid_request_error / model_not_found)
    ├── MethodNotAllowed             (405 invalid_request_error / method_not_allowed)
    ├── Conflict                     (409 invalid_request_error / conflict)
    ├── ClientGone                   (499 client_closed_request: the client left before the answer)
    ├── RateLimited                  (429 rate_limit_error, with Retry-After)
    ├── BackendRefused               (502 api_error / backend_refused: a backend refused a request we built)
    ├── InsufficientStorage          (507 insufficient_storage, with Retry-After: the media folder's disk is full)
    └── BackendUnavailable           (503 service_unavailable, with Retry-After)
        └── BackendTimeout           (504 timeout)

Backends translate httpx / SDK errors into these at their boundary; nothing else reaches a client. A message
that quotes what the client sent quotes ``excerpt(value)``: short and escaped, never the whole value.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXCERPT_CHARS = 64


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``value`` quoted for an error message: repr-escaped (control characters shown as escapes, not sent) and cut
    to ``limit`` characters, saying how long it was when cut; a megabyte model name must not come back whole."""
    quoted = repr(value)
    if len(quoted) <= limit:
        return quoted
    if not isinstance(value, str):
        return f"{quoted[:limit]}…"
    cut = value[:limit]
    while len(repr(cut)) > limit:  # cut the text, not its escapes: the excerpt stays a whole literal
        cut = cut[:-1]
    return f"{cut!r}… ({len(value)} characters)"


def param_name(name: str) -> str:
    """A name the client chose (a logit_bias key, a form field) as an error's ``param``: itself when it is short and
    printable, else its excerpt."""
    return name if len(name) <= EXCERPT_CHARS and name.isprintable() else excerpt(name)


class VChatError(Exception):
    """Raised when a request fails for a reason the gateway cannot name more precisely."""

    status_code: int = 500
    error_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The OpenAI error envelope for this error."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param,
                          "code": self.code}}

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` for errors a client should retry later)."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InvalidRequest(VChatError):
    """Raised when the request is well-formed HTTP but asks for something the gateway will not do."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code: ClassVar[str | None] = None


class RequestValidationFailed(InvalidRequest):
    """Raised when the body is not valid JSON or does not match the endpoint's schema."""

    status_code = 422
    default_code = "invalid_value"


class RequestTooLarge(InvalidRequest):
    """Raised when a request body exceeds the gateway's size limit (checked while it streams in)."""

    status_code = 413
    default_code: ClassVar[str | None] = "request_too_large"


class ModelLimitExceeded(InvalidRequest):
    """Raised when vLLM refuses a request over a limit it names (``limit``), so that a caller can fit under it."""

    def __init__(self, message: str, *, limit: int, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.limit = limit


class EncoderCacheExceeded(ModelLimitExceeded):
    """Raised when a request's images or video need more visual tokens than vLLM's encoder cache holds."""


class ContextExceeded(ModelLimitExceeded):
    """Raised when a request's prompt and reply budget exceed the context vLLM serves the model with."""


class MediaRejected(InvalidRequest):
    """Raised when a video a client referred to cannot be used; the message says why in plain words."""

    default_code: ClassVar[str | None] = "invalid_video"


class UrlNotAllowed(MediaRejected):
    """Raised when a URL (or any redirect, page media or manifest entry behind it) is not a public http(s) URL."""

    default_code: ClassVar[str | None] = "url_not_allowed"


class MediaFetchFailed(MediaRejected):
    """Raised when the video's server answers with an error, or the connection breaks."""

    default_code: ClassVar[str | None] = "video_fetch_failed"


class MediaTimeout(MediaRejected):
    """Raised when fetching or processing a video exceeds its wall-clock or idle deadline."""

    status_code = 408
    default_code: ClassVar[str | None] = "video_fetch_timeout"


class MediaTooLarge(MediaRejected):
    """Raised when a video exceeds a byte, duration or frame-size cap."""

    status_code = 413
    default_code: ClassVar[str | None] = "video_too_large"


class NotAVideo(MediaRejected):
    """Raised when the content is not a video ffprobe can read (an image, audio only, text, an archive…)."""

    status_code = 415
    default_code: ClassVar[str | None] = "not_a_video"


class AuthenticationFailed(VChatError):
    """Raised when API keys are configured and the request carries none or a wrong one."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(VChatError):
    """Raised when the caller is authenticated but may not use this route."""

    status_code = 403
    error_type = "permission_error"
    default_code = "forbidden"


class NotFound(VChatError):
    """Raised when the route or the named object does not exist."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    """Raised when the requested model is neither the base model nor a loaded adapter."""

    default_code = "model_not_found"


class MethodNotAllowed(VChatError):
    """Raised when the route exists but not for this HTTP method."""

    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class ClientGone(VChatError):
    """Raised when the client went away before its answer was ready (nginx's 499; nobody reads the body)."""

    status_code = 499
    error_type = "invalid_request_error"
    default_code = "client_closed_request"


class Conflict(VChatError):
    """Raised when the request clashes with what exists (an adapter name already taken)."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class RateLimited(VChatError):
    """Raised when the gateway is at capacity; the client should retry after ``retry_after`` seconds."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class BackendRefused(VChatError):
    """Raised when a backend refuses a request the gateway built (Gemini's 400s, a video it cannot process)."""

    status_code = 502
    error_type = "api_error"
    default_code: ClassVar[str | None] = "backend_refused"


class InsufficientStorage(VChatError):
    """Raised when the media folder's filesystem has no room left for a video, its copy or its frames, even after
    the cache evicted what it could; ``media/space.py`` makes it from ENOSPC, wherever the write happened."""

    status_code = 507
    error_type = "insufficient_storage"
    default_code = "insufficient_storage"


class BackendUnavailable(VChatError):
    """Raised when a model backend (vLLM, Gemini) cannot be reached or reports itself unhealthy."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "backend_unavailable"


class BackendTimeout(BackendUnavailable):
    """Raised when a model backend did not answer within its deadline."""

    status_code = 504
    default_code = "timeout"
