"""The SSRF guard: which URLs and addresses may be fetched (``check_url`` before a request, ``check_ip`` at connect:
see ``media.transport``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import httpx2

from gateway.errors import UrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = frozenset({"http", "https"})
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells literally (``[::1]`` included), or None for a name."""
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
    literal = ip_literal(host) is not None
    name = str(address) if literal else _normal_host(host)
    # The setting is named so that an operator fetching from their own network (a local file server in
    # development, an intranet) finds the switch without reading the source.
    raise UrlNotAllowed(f"{name} {'is' if literal else 'resolves to'} a non-public address ({reason}); only public "
                        f"http(s) servers can be fetched, unless the gateway's VCHAT_MEDIA_ALLOWED_HOSTS lists {name}")


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
    literal = ip_literal(host)
    if literal is not None:
        check_ip(literal, host, policy)
    elif not _HOSTNAME.fullmatch(_normal_host(host)):
        # Percent-escapes, empty labels and the like have no business in a host; resolvers disagree about them.
        raise UrlNotAllowed("the URL's host is not a valid host name")
    return parsed
