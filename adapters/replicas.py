"""Loads and unloads an adapter in EVERY vLLM replica at run time, confirming each through its ``/v1/models``."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2


@dataclass(frozen=True)
class ReplicaResult:
    url: str
    ok: bool
    detail: str


async def _listed(http: httpx2.AsyncClient, url: str, name: str, headers: dict[str, str]) -> bool:
    response = await http.get(f"{url}/v1/models", headers=headers)
    response.raise_for_status()
    return any(card.get("id") == name for card in response.json().get("data", []))


async def _load_one(http: httpx2.AsyncClient, url: str, name: str, path: str,
                    headers: dict[str, str]) -> ReplicaResult:
    try:
        if await _listed(http, url, name, headers):
            return ReplicaResult(url, True, "already loaded")
        response = await http.post(f"{url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path},
                                   headers=headers)
        if response.status_code != 200 and "already" not in response.text:
            return ReplicaResult(url, False, f"HTTP {response.status_code}: {response.text[:300]}")
        if not await _listed(http, url, name, headers):
            return ReplicaResult(url, False, "loaded but not listed in /v1/models")
        return ReplicaResult(url, True, "loaded")
    except httpx2.HTTPError as exc:
        return ReplicaResult(url, False, f"unreachable ({type(exc).__name__})")


async def _unload_one(http: httpx2.AsyncClient, url: str, name: str, headers: dict[str, str]) -> ReplicaResult:
    try:
        if not await _listed(http, url, name, headers):
            return ReplicaResult(url, True, "not loaded")
        response = await http.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": name}, headers=headers)
        if response.status_code != 200:
            return ReplicaResult(url, False, f"HTTP {response.status_code}: {response.text[:300]}")
        if await _listed(http, url, name, headers):
            return ReplicaResult(url, False, "unloaded but still listed in /v1/models")
        return ReplicaResult(url, True, "unloaded")
    except httpx2.HTTPError as exc:
        return ReplicaResult(url, False, f"unreachable ({type(exc).__name__})")


async def discover(replicas: list[str], dns: str | None) -> tuple[list[str], list[ReplicaResult]]:
    """The replicas to reach now: ``replicas`` plus, when ``dns`` (``http://host:port``) is given, one URL per address
    that name resolves to at this moment — a Kubernetes headless Service lists exactly its ready pods, so an
    autoscaled Deployment's new replicas are included. A name that does not resolve is a failed result."""
    urls = [url.rstrip("/") for url in replicas]
    if dns is None:
        return urls, []
    parts = urlsplit(dns)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return urls, [ReplicaResult(dns, False, f"cannot resolve {host} ({exc})")]
    addresses = dict.fromkeys(str(info[4][0]) for info in found)
    if not addresses:
        return urls, [ReplicaResult(dns, False, f"{host} resolves to no address")]
    for address in addresses:
        url = f"{parts.scheme}://{f'[{address}]' if ':' in address else address}:{port}"
        if url not in urls:
            urls.append(url)
    return urls, []


async def load_everywhere(replicas: list[str], name: str, path: str, *, dns: str | None = None,
                          api_key: str | None = None, timeout_s: float = 120.0) -> list[ReplicaResult]:
    """Load ``name`` from ``path`` (as the replicas see it) into every replica (see ``discover``), concurrently."""
    urls, failed = await discover(replicas, dns)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx2.AsyncClient(timeout=timeout_s, trust_env=False) as http:
        return failed + list(await asyncio.gather(*(_load_one(http, url, name, path, headers) for url in urls)))


async def unload_everywhere(replicas: list[str], name: str, *, dns: str | None = None, api_key: str | None = None,
                            timeout_s: float = 60.0) -> list[ReplicaResult]:
    urls, failed = await discover(replicas, dns)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx2.AsyncClient(timeout=timeout_s, trust_env=False) as http:
        return failed + list(await asyncio.gather(*(_unload_one(http, url, name, headers) for url in urls)))
