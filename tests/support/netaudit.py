"""A process-wide audit hook: no test may connect past loopback or resolve a real DNS name.

Installed once for the whole test session (conftest); the ``net`` fixture exposes what one test did, so a test can
assert that a refused URL was never contacted. Off-host attempts raise inside the code under test AND fail the test.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Any


def _numeric(name: str) -> bool:
    try:
        socket.inet_aton(name)  # also the short and integer forms (127.1, 2130706433) the C resolver accepts
        return True
    except OSError:
        try:
            ipaddress.ip_address(name.split("%")[0])
            return True
        except ValueError:
            return False


@dataclass
class NetAudit:
    """What one test's code did on the network: every connect and lookup, and any off-host attempt."""

    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    offhost: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect" and isinstance(args[1], tuple) and args[1]:
            host, port = str(args[1][0]), int(args[1][1])
            with self.lock:
                self.connects.append((host, port))
            try:
                loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                self.offhost.append(f"connect {host}:{port}")
                raise PermissionError(f"test tried to connect to {host}:{port}")
        elif event == "socket.getaddrinfo" and args[0] is not None:
            name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            with self.lock:
                self.lookups.append(name)
            if name != "localhost" and not _numeric(name):
                self.offhost.append(f"lookup {name}")
                raise socket.gaierror(socket.EAI_NONAME, f"test tried to resolve {name}")


_current: list[NetAudit] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _current and event in ("socket.connect", "socket.getaddrinfo"):
        _current[-1].hook(event, args)


def install() -> None:
    """Add the hook (audit hooks cannot be removed; it only acts while a test is running)."""
    sys.addaudithook(_audit)


def begin() -> NetAudit:
    audit = NetAudit()
    _current.append(audit)
    return audit


def end(audit: NetAudit) -> None:
    _current.remove(audit)
