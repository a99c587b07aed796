"""The one redirect loop of media fetches and page resolution, async and blocking alike: httpx2's hop rules, the
guard on every hop before it is sent, the cap with its message, and redirect bodies never read.

The network here is an ``httpx2.MockTransport`` (hostnames under ``.example`` stand for public servers; the guard's
connect-time check is tested in test_guard.py against real sockets).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest

from gateway.errors import MediaFetchFailed, UrlNotAllowed
from gateway.media.guard import HostPolicy
from gateway.media.redirects import loggable_url, redirect_limit_reached, send_following, send_following_sync

POLICY = HostPolicy()
Routes = dict[str, Callable[[httpx2.Request], httpx2.Response]]


class Untouchable(httpx2.AsyncByteStream, httpx2.SyncByteStream):
    """A redirect's body that fails the test if anybody reads it."""

    def __iter__(self) -> Iterator[bytes]:
        raise AssertionError("a redirect body was read")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise AssertionError("a redirect body was read")
        yield b""  # pragma: no cover


def redirect(location: str, status: int = 302) -> Callable[[httpx2.Request], httpx2.Response]:
    return lambda _: httpx2.Response(status, headers={"Location": location}, stream=Untouchable())


def echo(request: httpx2.Request) -> httpx2.Response:
    """The final hop: says what it received."""
    return httpx2.Response(200, json={"method": request.method, "body": request.content.decode(),
                                      "authorization": request.headers.get("authorization"),
                                      "url": str(request.url)})


class Net:
    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.sent: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(f"{request.method} {request.url.host}{request.url.path}")
        return self.routes[f"{request.url.host}{request.url.path}"](request)


async def follow(net: Net, method: str, url: str, *, mode: str, limit: int = 5, **fields: Any) -> dict[str, Any]:
    """Follow ``url`` with the async loop or the blocking one; the final answer's JSON."""
    transport = httpx2.MockTransport(net)
    hops: list[str] = []

    def before(request: httpx2.Request) -> None:
        hops.append(str(request.url))

    if mode == "async":
        async with httpx2.AsyncClient(transport=transport) as client:
            request = client.build_request(method, url, **fields)
            response = await send_following(client, request, POLICY, limit, before)
            body = json.loads(await response.aread())
            await response.aclose()
    else:
        with httpx2.Client(transport=transport) as client:
            request = client.build_request(method, url, **fields)
            response = send_following_sync(client, request, POLICY, limit, before)
            body = json.loads(response.read())
            response.close()
    assert len(hops) == len(net.sent)  # ``before`` ran on every hop
    return dict(body)


MODES = pytest.mark.parametrize("mode", ["async", "sync"])


@MODES
async def test_relative_and_absolute_locations_are_followed(mode: str) -> None:
    net = Net({"a.example/start": redirect("/next"), "a.example/next": redirect("https://b.example/end", 301),
               "b.example/end": echo})
    answer = await follow(net, "GET", "http://a.example/start", mode=mode)
    assert answer["url"] == "https://b.example/end"
    assert net.sent == ["GET a.example/start", "GET a.example/next", "GET b.example/end"]


@MODES
@pytest.mark.parametrize(("status", "method", "body"), [(302, "GET", ""), (303, "GET", ""), (301, "GET", ""),
                                                         (307, "POST", "q=1"), (308, "POST", "q=1")])
async def test_one_method_rule_for_all_callers(mode: str, status: int, method: str, body: str) -> None:
    net = Net({"a.example/form": redirect("/done", status), "a.example/done": echo})
    answer = await follow(net, "POST", "http://a.example/form", mode=mode, content=b"q=1")
    assert (answer["method"], answer["body"]) == (method, body)


@MODES
async def test_credentials_do_not_follow_a_redirect_to_another_origin(mode: str) -> None:
    net = Net({"a.example/api": redirect("https://cdn.example/file"), "cdn.example/file": echo})
    answer = await follow(net, "GET", "https://a.example/api", mode=mode, headers={"Authorization": "Bearer s3"})
    assert answer["authorization"] is None


@MODES
@pytest.mark.parametrize("target", ["http://127.0.0.1/admin", "http://169.254.169.254/latest/meta-data/",
                                    "file:///etc/passwd", "http://user:pw@b.example/x", "gopher://b.example/"])
async def test_a_forbidden_hop_is_refused_before_it_is_sent(mode: str, target: str) -> None:
    net = Net({"a.example/r": redirect(target)})
    with pytest.raises(UrlNotAllowed):
        await follow(net, "GET", "http://a.example/r", mode=mode)
    assert net.sent == ["GET a.example/r"]


@MODES
async def test_the_first_url_is_checked_too(mode: str) -> None:
    net = Net({})
    with pytest.raises(UrlNotAllowed, match="loopback"):
        await follow(net, "GET", "http://[::1]/x", mode=mode)
    assert net.sent == []


@MODES
async def test_the_chain_is_capped_with_the_limit_named(mode: str) -> None:
    net = Net({"a.example/loop": redirect("/loop")})
    with pytest.raises(MediaFetchFailed, match=r"http://a.example/loop redirected more than 2 times: the redirect "
                                               r"limit was reached \(VCHAT_MEDIA_MAX_REDIRECTS=2\)") as caught:
        await follow(net, "GET", "http://a.example/loop?token=SECRET", mode=mode, limit=2)
    assert caught.value.code == "too_many_redirects" and "SECRET" not in caught.value.message
    assert len(net.sent) == 3  # the first request and two redirects followed


@MODES
async def test_a_location_that_is_not_a_url_is_a_fetch_failure(mode: str) -> None:
    net = Net({"a.example/r": redirect("http://a.example:port/")})
    with pytest.raises(MediaFetchFailed, match=r"http://a.example/r redirected to an invalid URL"):
        await follow(net, "GET", "http://a.example/r", mode=mode)


@MODES
async def test_a_redirect_status_without_location_is_the_final_answer(mode: str) -> None:
    def bare(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(302, json={"method": "GET", "url": "bare"})

    assert (await follow(Net({"a.example/r": bare}), "GET", "http://a.example/r", mode=mode))["url"] == "bare"


def test_the_limit_message_is_the_one_the_readme_names() -> None:
    error = redirect_limit_reached(loggable_url("https://u:p@a.example/x?sig=1"), 4)
    assert error.message == ("https://a.example/x redirected more than 4 times: the redirect limit was reached "
                             "(VCHAT_MEDIA_MAX_REDIRECTS=4)")


def test_a_cookie_set_on_one_hop_reaches_the_next_in_the_callers_jar() -> None:
    """What yt-dlp's handler relies on (its jar is the client's): a login redirect's cookie is sent and kept."""
    from http.cookiejar import CookieJar

    def login(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(302, headers={"Location": "/video", "Set-Cookie": "s=1; Path=/"})

    def video(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"cookie": request.headers.get("cookie")})

    jar = CookieJar()
    net = Net({"a.example/login": login, "a.example/video": video})
    with httpx2.Client(transport=httpx2.MockTransport(net), cookies=jar) as client:
        response = send_following_sync(client, client.build_request("GET", "http://a.example/login"), POLICY, 3)
        assert json.loads(response.read()) == {"cookie": "s=1"}
    assert [cookie.name for cookie in jar] == ["s"]
