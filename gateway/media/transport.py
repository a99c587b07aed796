"""httpx2 transports for untrusted URLs: every connection goes to an address the SSRF guard checked.

The seam is public on both sides: a ``GuardedAsyncTransport`` / ``GuardedTransport`` is an ``httpx2`` transport
(``AsyncBaseTransport`` / ``BaseTransport``) over an ``httpcore2`` connection pool built with a guarded
``network_backend`` — the pool's documented hook for how connections are opened. The backend resolves a name once,
checks every answer with ``guard.check_ip`` and connects to a checked address, never to the name again (no DNS
rebinding between check and connect); IP literals are checked the same way. No proxies, no unix sockets.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, cast

import anyio
import httpcore2
import httpx2

from gateway.media.guard import HostPolicy, IPAddress, check_ip, ip_literal

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


def _addresses(infos: Sequence[tuple[Any, ...]]) -> list[IPAddress]:
    """The distinct addresses of a getaddrinfo answer, in the resolver's order."""
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in found:
            found.append(address)
    if not found:
        raise httpcore2.ConnectError("the host name resolved to no address")
    return found


def _checked(host: str, addresses: list[IPAddress], policy: HostPolicy) -> list[IPAddress]:
    # Every answer is checked before any connect: a resolver mixing public and private answers is refused outright.
    for address in addresses:
        check_ip(address, host, policy)
    return addresses


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore2.ConnectTimeout("connect timed out")
    return left


class _GuardedAsyncBackend(httpcore2.AsyncNetworkBackend):
    """Resolves once, checks every address, then connects to a checked address (never to the name again)."""

    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        literal = ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                with anyio.fail_after(_remaining(deadline)):
                    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except TimeoutError:
                raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:
                raise httpcore2.ConnectError(f"could not resolve {host}: {exc}") from exc
            addresses = _addresses(infos)
        failure: Exception | None = None
        for address in _checked(host, addresses, self._policy):
            try:
                # TLS still verifies ``host``: httpcore2 passes the origin's name as server_hostname to start_tls.
                return await self._inner.connect_tcp(
                    str(address), port, timeout=_remaining(deadline), local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not allowed for media fetches")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedSyncBackend(httpcore2.NetworkBackend):
    """The blocking twin of ``_GuardedAsyncBackend``, for clients used from worker threads (yt-dlp)."""

    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore2.NetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        literal = ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                # getaddrinfo takes no timeout; the connect deadline starts counting from here anyway.
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore2.ConnectError(f"could not resolve {host}: {exc}") from exc
            addresses = _addresses(infos)
        failure: Exception | None = None
        for address in _checked(host, addresses, self._policy):
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout=_remaining(deadline), local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SocketOption] | None = None
    ) -> httpcore2.NetworkStream:
        raise httpcore2.ConnectError("unix sockets are not allowed for media fetches")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore2's errors as httpx2's, most specific first (what httpx2's own transports raise for the same failures).
_ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout), (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout), (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError), (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError), (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError), (httpcore2.ProtocolError, httpx2.ProtocolError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol), (httpcore2.ProxyError, httpx2.ProxyError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        ours = next((mapped for core, mapped in _ERRORS if isinstance(exc, core)), None)
        if ours is None:
            raise  # the guard's UrlNotAllowed (and anything else) passes through unchanged
        raise ours(str(exc)) from exc


def _core_request(request: httpx2.Request) -> httpcore2.Request:
    return httpcore2.Request(
        method=request.method,
        url=httpcore2.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                          target=request.url.raw_path),
        headers=request.headers.raw, content=cast(Any, request.stream), extensions=request.extensions,
    )


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class _SyncBody(httpx2.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _pool_options(limits: httpx2.Limits | None, verify: ssl.SSLContext | str | bool, http2: bool,
                  retries: int) -> dict[str, Any]:
    limits = limits or httpx2.Limits(max_connections=100, max_keepalive_connections=20)
    return {"ssl_context": httpx2.create_ssl_context(verify=verify, trust_env=False),
            "max_connections": limits.max_connections, "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry, "http1": True, "http2": http2, "retries": retries}


class GuardedAsyncTransport(httpx2.AsyncBaseTransport):
    """An httpx2 async transport, without proxies, whose every connection goes to an address the guard checked."""

    def __init__(self, policy: HostPolicy, *, verify: ssl.SSLContext | str | bool = True, http2: bool = False,
                 limits: httpx2.Limits | None = None, retries: int = 0) -> None:
        self._pool = httpcore2.AsyncConnectionPool(network_backend=_GuardedAsyncBackend(policy),
                                                   **_pool_options(limits, verify, http2, retries))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        with _httpx_errors():
            answer = await self._pool.handle_async_request(_core_request(request))
        return httpx2.Response(status_code=answer.status, headers=answer.headers,
                               stream=_AsyncBody(cast(AsyncIterable[bytes], answer.stream)),
                               extensions=answer.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


class GuardedTransport(httpx2.BaseTransport):
    """The blocking twin of ``GuardedAsyncTransport``, for requests made from worker threads (yt-dlp)."""

    def __init__(self, policy: HostPolicy, *, verify: ssl.SSLContext | str | bool = True, http2: bool = False,
                 limits: httpx2.Limits | None = None, retries: int = 0) -> None:
        self._pool = httpcore2.ConnectionPool(network_backend=_GuardedSyncBackend(policy),
                                              **_pool_options(limits, verify, http2, retries))

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        with _httpx_errors():
            answer = self._pool.handle_request(_core_request(request))
        return httpx2.Response(status_code=answer.status, headers=answer.headers,
                               stream=_SyncBody(cast(Iterable[bytes], answer.stream)), extensions=answer.extensions)

    def close(self) -> None:
        self._pool.close()


def guarded_async_client(policy: HostPolicy, *, verify: ssl.SSLContext | str | bool = True) -> httpx2.AsyncClient:
    """The client media fetches use: guarded transport, no environment proxies, no redirects, no cookie jar.

    Redirects are followed by ``media.redirects``, which checks every hop's URL before sending it."""
    # One long-lived client serves every caller: a cookie one caller's origin sets must not reach another's request.
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx2.AsyncClient(transport=GuardedAsyncTransport(policy, verify=verify), trust_env=False,
                              follow_redirects=False, cookies=no_cookies)


def guarded_sync_client(policy: HostPolicy) -> httpx2.Client:
    """A blocking client over ``GuardedTransport`` (no environment proxies, no redirects of its own)."""
    return httpx2.Client(transport=GuardedTransport(policy), trust_env=False, follow_redirects=False)
