"""``GuardedRH``, the one request handler yt-dlp is given: every request it makes goes over httpx2 through the
guard, every redirect hop is checked, bodies are capped and reads watch the deadline."""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from typing import Any, cast

import httpx2
import yt_dlp  # type: ignore[import-untyped]
from yt_dlp.networking.common import Request, RequestHandler, Response  # type: ignore[import-untyped]
from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError  # type: ignore[import-untyped]

from gateway.errors import MediaFetchFailed, UrlNotAllowed, VChatError
from gateway.media.pages.errors import chain
from gateway.media.pages.session import Session
from gateway.media.redirects import send_following_sync
from gateway.media.transport import guarded_sync_client

MAX_BODY_BYTES = 32 * 2**20  # a page, player script or API answer larger than this is not a video page


class GuardedRH(RequestHandler):  # type: ignore[misc]
    """A yt-dlp request handler sending over httpx2 through the guard, checking every redirect hop itself."""

    _SUPPORTED_URL_SCHEMES = ("http", "https")
    _SUPPORTED_PROXY_SCHEMES = ()  # any proxy makes the request unsupported
    _SUPPORTED_FEATURES = ()

    def __init__(self, *, session: Session, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._client = guarded_sync_client(session.policy)

    def close(self) -> None:
        self._client.close()

    def _check_extensions(self, extensions: dict[str, Any]) -> None:
        super()._check_extensions(extensions)
        for name in ("cookiejar", "timeout", "legacy_ssl", "keep_header_casing"):
            extensions.pop(name, None)

    def _send(self, request: Request) -> Response:
        headers = httpx2.Headers(self._get_headers(request))
        headers.setdefault("Accept-Encoding", "gzip, deflate")  # httpx2 decodes it; yt-dlp then sees plain bytes
        # yt-dlp's jar: cookies the page sets (on any hop) are kept for its later requests, as yt-dlp expects.
        self._client.cookies = self._get_cookiejar(request)
        timeout = self._calculate_timeout(request)
        try:
            outgoing = self._client.build_request(request.method, request.url, headers=headers,
                                                  content=_body_bytes(request.data), timeout=timeout)
        except httpx2.InvalidURL as exc:
            self._session.refuse(UrlNotAllowed(f"not a valid URL: {exc}"), RequestError)

        def before(hop: httpx2.Request) -> None:
            hop.extensions = {**hop.extensions, "timeout": httpx2.Timeout(min(timeout, self._session.time_left()))
                              .as_dict()}

        try:
            answer = send_following_sync(self._client, outgoing, self._session.policy, self._session.max_redirects,
                                         before)
        except VChatError as exc:  # the guard, the redirect limit (said in plain words, naming the limit)
            self._session.refuse(exc, RequestError)
        except httpx2.HTTPError as exc:
            refusal = next((link for link in chain(exc) if isinstance(link, UrlNotAllowed)), None)
            if refusal is not None:
                self._session.refuse(refusal, RequestError)
            raise TransportError(cause=exc) from exc
        response = _GuardedResponse(answer, str(answer.url), self._session)
        if not 200 <= answer.status_code < 300:
            raise HTTPError(response)
        return response


class _GuardedResponse(Response):  # type: ignore[misc]
    """yt-dlp's view of a streamed httpx2 response; reads are capped and watch the deadline."""

    def __init__(self, answer: httpx2.Response, url: str, session: Session) -> None:
        super().__init__(fp=io.BufferedReader(_Body(answer, session)), url=url, headers=_Pairs(answer.headers),
                         status=answer.status_code, reason=answer.reason_phrase or None)


class _Pairs:
    """Headers as yt-dlp's ``Response`` reads them (``.items()``), keeping repeated ones (``Set-Cookie``) apart."""

    def __init__(self, headers: httpx2.Headers) -> None:
        self._pairs = headers.multi_items()

    def items(self) -> list[tuple[str, str]]:
        return self._pairs


class _Body(io.RawIOBase):
    def __init__(self, answer: httpx2.Response, session: Session) -> None:
        self._answer = answer
        self._chunks = answer.iter_bytes()
        self._session = session
        self._pending = b""
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._session.time_left()
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            self._total += len(self._pending)
            if self._total > MAX_BODY_BYTES:
                self._session.refuse(MediaFetchFailed(
                    f"the page is larger than {MAX_BODY_BYTES // 2**20} MiB; send a direct video link"),
                    TransportError)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._answer.close()
        super().close()


class GuardedYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]
    """A YoutubeDL whose request director holds ``GuardedRH`` and nothing else."""

    def __init__(self, session: Session) -> None:
        self._session = session  # before super().__init__, in case it sends anything
        super().__init__(session.ydl_params())

    @functools.cached_property
    def _request_director(self) -> Any:
        return self.build_request_director([functools.partial(GuardedRH, session=self._session)])



def _body_bytes(data: object) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if hasattr(data, "read"):
        return bytes(data.read())
    return b"".join(cast(Iterable[bytes], data))
