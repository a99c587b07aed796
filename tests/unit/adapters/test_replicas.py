"""adapters.replicas.discover: the replica list named in settings plus what a DNS name resolves to right now."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from adapters.replicas import discover

HEADLESS = "vllm-headless.vchat.svc.cluster.local"


class Headless:
    """Stands in for ``socket.getaddrinfo`` for HEADLESS (the pods' addresses, as a headless Service answers with one
    record per ready pod); other names go to the real resolver (loopback only, under the test audit)."""

    def __init__(self, addresses: list[str] | None) -> None:
        self.addresses, self.real = addresses, socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != HEADLESS:
            return self.real(host, port, *args, **kwargs)
        if self.addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port)))
                for ip in self.addresses]


async def test_a_dns_name_adds_one_replica_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", Headless(["10.0.0.7", "10.0.0.8", "10.0.0.7", "fd00::9"]))
    urls, failed = await discover(["http://10.0.0.5:8001/"], f"http://{HEADLESS}:8001")
    assert urls == ["http://10.0.0.5:8001", "http://10.0.0.7:8001", "http://10.0.0.8:8001", "http://[fd00::9]:8001"]
    assert failed == []


async def test_addresses_already_listed_are_not_repeated() -> None:
    urls, failed = await discover(["http://127.0.0.1:8001"], "http://localhost:8001")
    assert urls == ["http://127.0.0.1:8001"] and failed == []


@pytest.mark.parametrize("addresses", [None, []])
async def test_a_name_that_does_not_resolve_is_a_failed_replica(monkeypatch: pytest.MonkeyPatch,
                                                                addresses: list[str] | None) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", Headless(addresses))
    urls, failed = await discover(["http://10.0.0.5:8001"], f"http://{HEADLESS}:8001")
    assert urls == ["http://10.0.0.5:8001"]
    assert [(r.url, r.ok) for r in failed] == [(f"http://{HEADLESS}:8001", False)]
    assert HEADLESS in failed[0].detail


async def test_without_a_name_the_list_is_as_configured() -> None:
    assert await discover(["http://a:1", "http://b:2/"], None) == (["http://a:1", "http://b:2"], [])
