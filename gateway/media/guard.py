"""The SSRF guard: which URLs and addresses may be fetched, and httpx2 transports that check each address at connect."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio
import httpcore2
import httpx2

from gateway.errors import UrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]

_SCHEMES = frozenset({"http", "https"})
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class HostPolicy:
    """Hostnames and networks an operator allows although their addresses are not public (``media_allowed_hosts``)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, entries: Iterable[str]) -> HostPolicy:
        """Build the policy from hostnames (ASCII/punycode), IPs and CIDRs; raise ValueError on anything else."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = _normal_host(raw)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not _HOSTNAME.fullmatch(entry):
                    raise ValueError(f"media_allowed_hosts: {raw!r} is not a hostname, IP address or CIDR") from None
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, ip: IPAddress, host: str) -> bool:
        """Whether ``host`` is allow-listed by name, or ``ip`` (or the IPv4 address it embeds) by network."""
        if _normal_host(host) in self.hosts:
            return True
        candidates = [ip] if (embedded := _embedded_ipv4(ip)) is None else [ip, embedded]
        return any(candidate in network for candidate in candidates for network in self.networks)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address traffic to ``ip`` really reaches (IPv4-mapped, NAT64, 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _classify(ip: IPAddress) -> str | None:
    # Order matters: Python calls multicast and ::/8 "global", so those are tested before is_global.
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _CGNAT:
        return "shared CGNAT"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    return None if ip.is_global else "non-public"


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched ("loopback", "private", …), or None for a public unicast address."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = _classify(embedded)
        if reason is not None:
            return f"{reason} IPv4 inside IPv6"
        if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is None:
            return None  # mapped / NAT64: the packets go to the (public) embedded address
    return _classify(ip)


def check_ip(ip: IPAddress | str, host: str, policy: HostPolicy) -> None:
    """Raise UrlNotAllowed unless ``ip`` (an address ``host`` resolved to) is public or allowed by the policy."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    reason = blocked_reason(address)
    if reason is None or policy.allows(address, host):
        return
    # For a name, the address stays out of the message: it would map the internal network for a caller.
    subject = f"{address} is" if _ip_literal(host) is not None else f"{_normal_host(host)} resolves to"
    raise UrlNotAllowed(f"{subject} a non-public address ({reason}); only public http(s) servers can be fetched")


def check_url(url: str | httpx2.URL, policy: HostPolicy) -> httpx2.URL:
    """Parse ``url`` and raise UrlNotAllowed unless it is an absolute http(s) URL without credentials.

    An IP-literal host is checked here; a hostname is checked when the guarded transport resolves it.
    """
    try:
        parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    except httpx2.InvalidURL as exc:
        raise UrlNotAllowed(f"not a valid URL: {exc}") from None
    if parsed.scheme not in _SCHEMES:
        shown = f"{parsed.scheme}: URLs" if parsed.scheme else "relative URLs"
        raise UrlNotAllowed(f"only http:// and https:// URLs can be fetched, not {shown}")
    if not parsed.host:
        raise UrlNotAllowed("the URL has no host")
    # ``http://trusted.example@evil.example/`` goes to evil.example; credentials are never needed for a video link.
    if parsed.userinfo:
        raise UrlNotAllowed("URLs with a user name or password (user@host) are not accepted")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded by httpx2
    literal = _ip_literal(host)
    if literal is not None:
        check_ip(literal, host, policy)
    elif not _HOSTNAME.fullmatch(_normal_host(host)):
        # Percent-escapes, empty labels and the like have no business in a host; resolvers disagree about them.
        raise UrlNotAllowed("the URL's host is not a valid host name")
    return parsed


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
        literal = _ip_literal(host)
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
        literal = _ip_literal(host)
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


def _swap_pool(transport: httpx2.AsyncHTTPTransport | httpx2.HTTPTransport, pool: object) -> None:
    # httpx2 takes no ``network_backend``; its transports send everything through ``_pool``. Fail closed if that
    # seam ever moves, rather than silently fetching through an unguarded pool.
    if not isinstance(getattr(transport, "_pool", None), httpcore2.ConnectionPool | httpcore2.AsyncConnectionPool):
        raise RuntimeError("httpx2 transport layout changed; the SSRF guard cannot be installed")
    transport._pool = pool  # type: ignore[assignment]


def guarded_async_transport(
    policy: HostPolicy,
    *,
    verify: ssl.SSLContext | str | bool = True,
    http2: bool = False,
    limits: httpx2.Limits | None = None,
    retries: int = 0,
) -> httpx2.AsyncHTTPTransport:
    """An httpx2 async transport, without proxies, whose every connection goes to an address the guard checked."""
    limits = limits or httpx2.Limits(max_connections=100, max_keepalive_connections=20)
    ssl_context = httpx2.create_ssl_context(verify=verify, trust_env=False)
    transport = httpx2.AsyncHTTPTransport(verify=ssl_context, trust_env=False, http2=http2, limits=limits)
    _swap_pool(transport, httpcore2.AsyncConnectionPool(
        ssl_context=ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        http1=True, http2=http2, retries=retries, network_backend=_GuardedAsyncBackend(policy),
    ))
    return transport


def guarded_sync_transport(
    policy: HostPolicy,
    *,
    verify: ssl.SSLContext | str | bool = True,
    http2: bool = False,
    limits: httpx2.Limits | None = None,
    retries: int = 0,
) -> httpx2.HTTPTransport:
    """The blocking twin of ``guarded_async_transport``, for requests made from worker threads (yt-dlp)."""
    limits = limits or httpx2.Limits(max_connections=100, max_keepalive_connections=20)
    ssl_context = httpx2.create_ssl_context(verify=verify, trust_env=False)
    transport = httpx2.HTTPTransport(verify=ssl_context, trust_env=False, http2=http2, limits=limits)
    _swap_pool(transport, httpcore2.ConnectionPool(
        ssl_context=ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        http1=True, http2=http2, retries=retries, network_backend=_GuardedSyncBackend(policy),
    ))
    return transport


def guarded_async_client(policy: HostPolicy, *, verify: ssl.SSLContext | str | bool = True) -> httpx2.AsyncClient:
    """The client media fetches use: guarded transport, no environment proxies, no redirects, no cookie jar."""
    # One long-lived client serves every caller: a cookie one caller's origin sets must not reach another's request.
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx2.AsyncClient(
        transport=guarded_async_transport(policy, verify=verify), trust_env=False, follow_redirects=False,
        cookies=no_cookies,
    )
