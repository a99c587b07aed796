"""The SSRF guard: address classification, URL checks, and the connect-time check of the guarded transports.

Every network test runs under ``net``: an audit hook that records each socket connect and name lookup and refuses
connects to non-loopback addresses and lookups of real DNS names, so even a broken guard sends nothing off the host.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

import httpx2
import pytest

from gateway.errors import UrlNotAllowed
from gateway.media.guard import (
    HostPolicy,
    blocked_reason,
    check_ip,
    check_url,
)
from gateway.media.transport import GuardedAsyncTransport, GuardedTransport, guarded_async_client
from tests.support.netaudit import NetAudit
from tests.support.origin import Origin


class ScriptedResolver:
    """Stands in for ``socket.getaddrinfo`` for ``localhost``: answers from a script (last answer repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in ("localhost", b"localhost"):
            return self.real(host, port, *args, **kwargs)
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))
                for ip in answer]


# --- pure checks ------------------------------------------------------------------------------------

NO_POLICY = HostPolicy()


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("10.255.255.255", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.0.1", "private"), ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "CGNAT"), ("100.127.255.254", "CGNAT"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "private"), ("255.255.255.255", "private"), ("192.0.2.1", "private"), ("2001:db8::1", "private"),
    ("::127.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "loopback IPv4 inside IPv6"), ("::ffff:10.0.0.1", "private IPv4 inside IPv6"),
    ("::ffff:169.254.169.254", "link-local IPv4 inside IPv6"), ("::ffff:0.0.0.0", "unspecified IPv4 inside IPv6"),
    ("64:ff9b::a00:1", "private IPv4 inside IPv6"), ("2002:a00:1::", "private IPv4 inside IPv6"),
    ("2002:7f00:1::", "loopback IPv4 inside IPv6"),
    ("8.8.8.8", None), ("93.184.216.34", None), ("172.32.0.1", None), ("100.128.0.1", None), ("11.0.0.1", None),
    ("192.169.0.1", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None), ("2002:808:808::", None),
])
def test_blocked_reason_and_check_ip(address: str, reason: str | None) -> None:
    ip = ipaddress.ip_address(address)
    got = blocked_reason(ip)
    if reason is None:
        assert got is None
        check_ip(ip, address, NO_POLICY)
    else:
        assert got is not None
        assert reason in got
        with pytest.raises(UrlNotAllowed, match="non-public address"):
            check_ip(address, address, NO_POLICY)


def test_refusal_of_a_name_does_not_reveal_the_address() -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        check_ip("10.20.30.40", "intranet.example", NO_POLICY)
    assert "intranet.example resolves to a non-public address (private)" in caught.value.message
    assert "10.20.30.40" not in caught.value.message
    assert caught.value.code == "url_not_allowed"


def test_policy_allows_exactly_what_it_lists() -> None:
    policy = HostPolicy.from_settings(["127.0.0.2", "10.1.0.0/16", " Media.Internal. ", "fd00::/8", "[::1]", ""])
    assert policy.hosts == frozenset({"media.internal"})
    for ip, host in [("127.0.0.2", "127.0.0.2"), ("10.1.2.3", "x.example"), ("10.9.9.9", "MEDIA.internal."),
                     ("::ffff:127.0.0.2", "::ffff:127.0.0.2"), ("fd00::5", "fd00::5"), ("::1", "::1")]:
        check_ip(ip, host, policy)
    for ip, host in [("127.0.0.1", "127.0.0.1"), ("10.2.0.1", "x.example"), ("10.9.9.9", "media.internal.evil"),
                     ("::ffff:127.0.0.1", "::ffff:127.0.0.1"), ("169.254.169.254", "169.254.169.254")]:
        with pytest.raises(UrlNotAllowed):
            check_ip(ip, host, policy)


@pytest.mark.parametrize("entry", ["http://media.internal", "media host", "10.0.0.0/33", "host:8080", "bücher.de"])
def test_policy_refuses_entries_it_cannot_read(entry: str) -> None:
    with pytest.raises(ValueError, match="media_allowed_hosts"):
        HostPolicy.from_settings([entry])


@pytest.mark.parametrize(("url", "message"), [
    ("file:///etc/passwd", "not file: URLs"),
    ("ftp://example.com/v.mp4", "not ftp: URLs"),
    ("javascript:alert(1)", "not javascript: URLs"),
    ("data:video/mp4;base64,AAAA", "not data: URLs"),
    ("gopher://example.com/", "not gopher: URLs"),
    ("//example.com/v.mp4", "not relative URLs"),
    ("v.mp4", "not relative URLs"),
    ("http:///v.mp4", "no host"),
    ("http://user:secret@example.com/v.mp4", "user name or password"),
    ("http://example.com@10.0.0.1/v.mp4", "user name or password"),
    ("http://127.0.0.1/v.mp4", r"^127\.0\.0\.1 is a non-public address \(loopback\); only public http\(s\) servers "
                               r"can be fetched, unless the gateway's VCHAT_MEDIA_ALLOWED_HOSTS lists 127\.0\.0\.1$"),
    ("http://[::1]:8080/v.mp4", "loopback"),
    ("http://[::ffff:127.0.0.1]/v.mp4", "loopback IPv4 inside IPv6"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.1/v.mp4", "private"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://[fe80::1%25eth0]/", None),
    ("http://exa mple.com/", "not a valid host name"),
    ("http://ex%41mple.com/", "not a valid host name"),
    ("http://a..b/", "not a valid host name"),
])
def test_check_url_refuses(url: str, message: str | None) -> None:
    with pytest.raises(UrlNotAllowed, match=message):
        check_url(url, NO_POLICY)


def test_check_url_accepts_public_and_allow_listed_urls() -> None:
    parsed = check_url("HTTPS://Example.COM/v.mp4?sig=abc", NO_POLICY)
    assert (parsed.scheme, parsed.host, parsed.params["sig"]) == ("https", "example.com", "abc")
    assert check_url("http://127.0.0.2:9/v.mp4", HostPolicy.from_settings(["127.0.0.2"])).port == 9
    assert check_url("http://bücher.de./a_b", NO_POLICY).raw_host == b"xn--bcher-kva.de."


# --- the connect-time check -------------------------------------------------------------------------


async def test_a_name_resolving_to_loopback_is_refused_before_connecting(net: NetAudit, origin: Origin) -> None:
    origin.file("/a.mp4", b"video")
    async with guarded_async_client(NO_POLICY) as client:
        with pytest.raises(UrlNotAllowed, match=r"^localhost resolves to a non-public address \(loopback\).* "
                                                "VCHAT_MEDIA_ALLOWED_HOSTS lists localhost$"):
            await client.get(f"http://localhost:{origin.port}/a.mp4")
    assert "localhost" in net.lookups
    assert net.connects == []
    assert origin.hits["/a.mp4"] == 0


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.0.0.1", "LocalHost"])
async def test_other_spellings_of_loopback_are_caught_at_connect(net: NetAudit, origin: Origin, host: str) -> None:
    origin.file("/a.mp4", b"video")
    url = f"http://{host}:{origin.port}/a.mp4"
    check_url(url, NO_POLICY)  # not an IP literal to the URL check: only resolution reveals the address
    async with guarded_async_client(NO_POLICY) as client:
        with pytest.raises(UrlNotAllowed, match="loopback"):
            await client.get(url)
    assert net.connects == []


async def test_allowed_name_connects_to_the_checked_address(
    net: NetAudit, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin.file("/a.mp4", b"video")
    monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver(["127.0.0.1"]))
    async with guarded_async_client(HostPolicy.from_settings(["127.0.0.1"])) as client:
        response = await client.get(f"http://localhost:{origin.port}/a.mp4")
    assert response.content == b"video"
    assert net.connects == [("127.0.0.1", origin.port)]


async def test_dns_rebinding_after_the_check_cannot_redirect_the_connection(
    net: NetAudit, origin2: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first answer is allowed; any later lookup would say 127.0.0.1, which is not. Only the checked one is used.
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    origin2.file("/a.mp4", b"video")
    async with guarded_async_client(HostPolicy.from_settings(["127.0.0.2"])) as client:
        response = await client.get(f"http://localhost:{origin2.port}/a.mp4")
    assert response.status_code == 200
    assert resolver.calls == 1
    assert net.connects == [("127.0.0.2", origin2.port)]


async def test_every_resolved_address_is_checked(
    net: NetAudit, origin2: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An allowed first answer must not launder a private second one (a client would fall back to it).
    monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver(["127.0.0.2", "10.0.0.1"]))
    async with guarded_async_client(HostPolicy.from_settings(["127.0.0.2"])) as client:
        with pytest.raises(UrlNotAllowed, match="private"):
            await client.get(f"http://localhost:{origin2.port}/a.mp4")
    assert net.connects == []


async def test_a_private_answer_is_refused_before_any_packet(net: NetAudit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver(["10.0.0.1"]))
    async with guarded_async_client(NO_POLICY) as client:
        with pytest.raises(UrlNotAllowed, match="private"):
            await client.get("http://localhost:9/a.mp4", timeout=0.5)
    assert net.connects == []


async def test_ip_literals_are_checked_at_connect_even_without_check_url(net: NetAudit) -> None:
    async with httpx2.AsyncClient(transport=GuardedAsyncTransport(NO_POLICY), trust_env=False) as client:
        for url in ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/"]:
            with pytest.raises(UrlNotAllowed):
                await client.get(url, timeout=0.5)
    assert net.connects == []


async def test_environment_proxies_are_ignored(
    net: NetAudit, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.3:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.3:9")
    origin.file("/a.mp4", b"video")
    async with guarded_async_client(HostPolicy.from_settings(["127.0.0.1"])) as client:
        assert (await client.get(origin.url("/a.mp4"))).content == b"video"
    assert net.connects == [("127.0.0.1", origin.port)]


def test_sync_transport_guards_the_same_way(
    net: NetAudit, origin2: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin2.file("/a.mp4", b"video")
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    policy = HostPolicy.from_settings(["127.0.0.2"])
    with httpx2.Client(transport=GuardedTransport(policy), trust_env=False, timeout=2) as client:
        assert client.get(f"http://localhost:{origin2.port}/a.mp4").content == b"video"
        assert client.get(origin2.url("/a.mp4")).content == b"video"
        for url in [f"http://127.0.0.1:{origin2.port}/a.mp4", "http://169.254.169.254/", "http://[::1]:9/"]:
            with pytest.raises(UrlNotAllowed):
                client.get(url)
    with (
        httpx2.Client(transport=GuardedTransport(NO_POLICY), trust_env=False, timeout=2) as client,
        pytest.raises(UrlNotAllowed, match="localhost resolves"),
    ):
        client.get(f"http://localhost:{origin2.port}/a.mp4")
    assert resolver.calls == 2
    assert {address for address, _ in net.connects} == {"127.0.0.2"}
    assert origin2.hits["/a.mp4"] == 2


def test_sync_transport_can_be_used_from_a_worker_thread(net: NetAudit, origin: Origin) -> None:
    origin.file("/a.mp4", b"video")
    results: list[bytes | BaseException] = []

    def work() -> None:
        with httpx2.Client(transport=GuardedTransport(NO_POLICY), trust_env=False, timeout=2) as client:
            try:
                results.append(client.get(origin.url("/a.mp4")).content)
            except UrlNotAllowed as exc:
                results.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(5)
    assert isinstance(results[0], UrlNotAllowed)
    assert net.connects == []
