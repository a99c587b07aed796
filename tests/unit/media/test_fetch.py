"""fetch_to_file against a real loopback origin: checksums, checked redirects, caps, timeouts and cleanup.

Each test runs under ``net``, an audit hook that records socket connects and refuses any to a non-loopback address,
so "refused before connecting" is observed rather than assumed, and a broken guard cannot send traffic anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import MediaFetchFailed, MediaTimeout, MediaTooLarge, UrlNotAllowed
from gateway.logs import URL_LOGGERS, configure_logging
from gateway.media.fetch import Fetched, FetchLimits, fetch_to_file
from gateway.media.guard import HostPolicy
from gateway.media.redirects import loggable_url
from gateway.media.transport import guarded_async_client
from tests.support.netaudit import NetAudit
from tests.support.origin import Origin
from vchat_settings import Settings

LIMITS = FetchLimits(max_bytes=1 << 20, timeout_s=3.0, idle_timeout_s=1.0, max_redirects=3)
LOOPBACK_1 = HostPolicy.from_settings(["127.0.0.1"])
ONLY_2 = HostPolicy.from_settings(["127.0.0.2"])  # 127.0.0.1 stays forbidden


async def fetch(url: str, dest: Path, policy: HostPolicy, **limits: Any) -> Fetched:
    async with guarded_async_client(policy) as client:
        return await fetch_to_file(client, url, dest, FetchLimits(**{**LIMITS.__dict__, **limits}), policy)


def empty(directory: Path) -> bool:
    return os.listdir(directory) == []


# --- success ----------------------------------------------------------------------------------------


async def test_direct_fetch_streams_to_a_temp_file_in_dest_dir(net: NetAudit, origin: Origin, tmp_path: Path) -> None:
    body = os.urandom(300_000)
    url = origin.file("/clip.mp4", body)
    fetched = await fetch(url + "?sig=abc", tmp_path, LOOPBACK_1)
    assert fetched.path.parent == tmp_path
    assert fetched.path.read_bytes() == body
    assert (fetched.size, fetched.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert (fetched.content_type, fetched.final_url) == ("video/mp4", url + "?sig=abc")
    assert os.listdir(tmp_path) == [fetched.path.name]
    assert origin.hits["/clip.mp4"] == 1
    assert net.connects == [("127.0.0.1", origin.port)]


async def test_body_without_length_exactly_at_the_cap_is_accepted(origin: Origin, tmp_path: Path) -> None:
    url = origin.file("/clip.mp4", b"v" * 4096, send_length=False, chunk=1000)
    fetched = await fetch(url, tmp_path, LOOPBACK_1, max_bytes=4096)
    assert fetched.size == 4096


@pytest.mark.parametrize(("hops", "max_redirects"), [(0, 0), (1, 1), (3, 3)])
async def test_redirects_are_followed_up_to_the_limit(
    origin: Origin, tmp_path: Path, hops: int, max_redirects: int
) -> None:
    target = origin.file("/clip.mp4", b"video")
    for hop in range(hops):
        following = "/clip.mp4" if hop == hops - 1 else f"/r{hop + 1}"
        location = following if hop % 2 == 0 else origin.url(following)  # relative and absolute Locations
        origin.redirect(f"/r{hop}", location, status=(302, 307, 301)[hop % 3])
    start = origin.url("/r0") if hops else target
    fetched = await fetch(start, tmp_path, LOOPBACK_1, max_redirects=max_redirects)
    assert fetched.final_url == target
    assert fetched.path.read_bytes() == b"video"
    assert origin.hits["/clip.mp4"] == 1


# --- refusals: nothing is contacted -----------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://127.0.0.2/clip.mp4", "javascript:alert(1)", "data:video/mp4;base64,AAAA",
    "http://10.0.0.1/clip.mp4", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]:9/", "http://me@127.0.0.2:9/",
])
async def test_refused_urls_are_never_contacted(net: NetAudit, tmp_path: Path, url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        await fetch(url, tmp_path, ONLY_2)
    assert net.connects == []
    assert empty(tmp_path)


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:{port}/clip.mp4", "http://169.254.169.254/latest/meta-data/iam/", "http://10.0.0.1/clip.mp4",
    "http://[::1]:{port}/clip.mp4", "http://[::ffff:127.0.0.1]:{port}/clip.mp4", "http://[::ffff:10.0.0.1]/",
    "http://localhost:{port}/clip.mp4", "http://2130706433:{port}/clip.mp4", "file:///etc/passwd",
    "ftp://127.0.0.2/clip.mp4", "http://user@127.0.0.2:{port}/clip.mp4",
])
async def test_redirects_to_forbidden_targets_are_refused_before_connecting(
    net: NetAudit, origin2: Origin, tmp_path: Path, target: str
) -> None:
    origin2.file("/clip.mp4", b"video")
    start = origin2.redirect("/r", target.format(port=origin2.port))
    with pytest.raises(UrlNotAllowed):
        await fetch(start, tmp_path, ONLY_2)
    assert origin2.hits == {"/r": 1}
    assert net.connects == [("127.0.0.2", origin2.port)]  # the origin only: never the redirect's target
    assert empty(tmp_path)


async def test_too_many_redirects(origin: Origin, tmp_path: Path) -> None:
    start = origin.redirect("/loop", "/loop")
    with pytest.raises(MediaFetchFailed, match=r"redirected more than 2 times: the redirect limit was reached "
                                               r"\(VCHAT_MEDIA_MAX_REDIRECTS=2\)") as caught:
        await fetch(start, tmp_path, LOOPBACK_1, max_redirects=2)
    assert caught.value.code == "too_many_redirects"
    assert origin.hits["/loop"] == 3
    assert empty(tmp_path)


# --- server failures, caps, timeouts -----------------------------------------------------------------


@pytest.mark.parametrize(("status", "message"), [(404, "HTTP 404 Not Found"), (500, "HTTP 500"), (304, "HTTP 304")])
async def test_error_statuses_fail_with_the_status(
    origin: Origin, tmp_path: Path, status: int, message: str
) -> None:
    url = origin.file("/clip.mp4", b"nope", status=status)
    with pytest.raises(MediaFetchFailed, match=message) as caught:
        await fetch(url, tmp_path, LOOPBACK_1)
    assert caught.value.code == "video_fetch_failed"
    assert empty(tmp_path)


async def test_connection_refused_fails(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    with pytest.raises(MediaFetchFailed, match="could not fetch"):
        await fetch(f"http://127.0.0.2:{port}/clip.mp4", tmp_path, ONLY_2)
    assert empty(tmp_path)


async def test_body_over_the_cap_without_content_length(origin: Origin, tmp_path: Path) -> None:
    url = origin.file("/big.mp4", b"v" * 5000, send_length=False, chunk=1000)
    with pytest.raises(MediaTooLarge, match="larger than the limit of 4096 bytes") as caught:
        await fetch(url, tmp_path, LOOPBACK_1, max_bytes=4096)
    assert caught.value.status_code == 413
    assert empty(tmp_path)


async def test_content_length_over_the_cap_is_refused_before_the_body(origin: Origin, tmp_path: Path) -> None:
    # Each chunk of the body comes an hour after the last: a fetch that read any of it would never finish.
    url = origin.file("/big.mp4", b"v" * 5000, delay_s=3600.0, chunk=1000)
    with pytest.raises(MediaTooLarge, match="is 5000 bytes; the limit is 4096"):
        await asyncio.wait_for(fetch(url, tmp_path, LOOPBACK_1, max_bytes=4096), 120)
    assert empty(tmp_path)


@pytest.mark.timing
async def test_a_trickle_slower_than_the_idle_timeout(origin: Origin, tmp_path: Path) -> None:
    # A byte a minute: only the 0.2 s idle timeout can end this fetch before the test's own 120 s bound.
    url = origin.file("/slow.mp4", b"v" * 100, chunk=10, delay_s=60.0)
    with pytest.raises(MediaTimeout, match=r"sent nothing for 0\.2 s") as caught:
        await asyncio.wait_for(fetch(url, tmp_path, LOOPBACK_1, idle_timeout_s=0.2), 120)
    assert caught.value.status_code == 408
    assert empty(tmp_path)


@pytest.mark.timing
async def test_a_steady_trickle_hits_the_wall_clock_deadline(origin: Origin, tmp_path: Path) -> None:
    # 400 chunks, one every 0.05 s: 20 s in all, never idle for 1 s, so only the 0.5 s deadline can stop it early.
    url = origin.file("/slow.mp4", b"v" * 4000, chunk=10, delay_s=0.05, send_length=False)
    with pytest.raises(MediaTimeout, match=r"took longer than 0\.5 s"):
        await asyncio.wait_for(fetch(url, tmp_path, LOOPBACK_1, timeout_s=0.5, idle_timeout_s=1.0), 120)
    assert empty(tmp_path)


async def test_cancellation_mid_body_removes_the_temp_file(origin: Origin, tmp_path: Path) -> None:
    url = origin.file("/slow.mp4", b"v" * 400, chunk=10, delay_s=0.05)
    task = asyncio.create_task(fetch(url, tmp_path, LOOPBACK_1))
    deadline = time.monotonic() + 60  # bounds a failure only
    while empty(tmp_path):  # the temp file exists once the headers are in and the body is trickling
        assert time.monotonic() < deadline, "the body never started arriving"
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert empty(tmp_path)


# --- hygiene -------------------------------------------------------------------------------------------


async def test_query_strings_stay_out_of_logs_and_errors(
    origin: Origin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.media")
    good = origin.file("/clip.mp4", b"video")
    origin.redirect("/r", good + "?token=HOP-SECRET")
    await fetch(origin.url("/r?token=FIRST-SECRET"), tmp_path, LOOPBACK_1)
    with pytest.raises(MediaFetchFailed) as caught:
        await fetch(origin.url("/missing?token=FAIL-SECRET#frag"), tmp_path, LOOPBACK_1)
    assert "SECRET" not in caught.value.message
    assert f"http://127.0.0.1:{origin.port}/clip.mp4" in caplog.text
    assert "SECRET" not in caplog.text
    assert loggable_url("https://u:p@[::1]:8443/a/b?x=1#y") == "https://[::1]:8443/a/b"


@contextlib.contextmanager
def served_logging(level: str) -> Iterator[None]:
    """Logging configured as ``vchat serve`` configures it (to this test's stderr), restored afterwards."""
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", *URL_LOGGERS)]
    saved = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in loggers]
    try:
        configure_logging(level, "text")
        yield
    finally:
        for lg, was, handlers, propagate, disabled in saved:
            lg.handlers[:], lg.propagate, lg.disabled = handlers, propagate, disabled
            lg.setLevel(was)  # also clears the loggers' cached levels


async def test_served_logs_keep_signed_urls_out_even_at_debug(origin: Origin, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The HTTP client libraries log whole URLs (httpx at INFO) and response headers (httpcore at DEBUG, where a
    redirect's Location is): under the service's own logging, at its most verbose, none of that reaches the log."""
    good = origin.file("/clip.mp4", b"video")
    origin.redirect("/r", good + "?X-Amz-Signature=HOP-SECRET")
    with served_logging("DEBUG"):
        await fetch(origin.url("/r?X-Amz-Signature=FIRST-SECRET"), tmp_path, LOOPBACK_1)
    err = capsys.readouterr().err
    assert f"fetched http://127.0.0.1:{origin.port}/r: 5 bytes from http://127.0.0.1:{origin.port}/clip.mp4" in err
    assert "SECRET" not in err


async def test_cookies_set_by_an_origin_are_not_kept(origin: Origin, tmp_path: Path) -> None:
    url = origin.file("/clip.mp4", b"video", headers={"Set-Cookie": "session=attacker; Path=/"})
    async with guarded_async_client(LOOPBACK_1) as client:
        await fetch_to_file(client, url, tmp_path, LIMITS, LOOPBACK_1)
        assert len(client.cookies.jar) == 0


def test_limits_come_from_the_media_settings() -> None:
    settings = Settings(media_max_bytes=2048, media_fetch_timeout_s=9, media_idle_timeout_s=2, media_max_redirects=4)
    assert FetchLimits.from_settings(settings) == FetchLimits(2048, 9.0, 2.0, 4)
