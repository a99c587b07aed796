"""Following redirects of untrusted URLs, one hop at a time: httpx2 builds each hop (``Response.next_request``: its
method, header and body rules), the SSRF guard checks the hop's URL before it is sent, and the chain is capped.

One rule for direct files (``media.fetch``, async) and for every request yt-dlp makes (``media.pages``, blocking).
Redirect bodies are never read: a hostile 302 with a huge body costs nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx2

from gateway.errors import MediaFetchFailed
from gateway.media.guard import HostPolicy, check_url

logger = logging.getLogger(__name__)

BeforeSend = Callable[[httpx2.Request], None]


def loggable_url(url: str | httpx2.URL) -> str:
    """``scheme://host[:port]/path`` only: query strings, fragments and credentials may carry secrets."""
    try:
        parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    except httpx2.InvalidURL:
        return "<invalid URL>"
    port = f":{parsed.port}" if parsed.port is not None else ""
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}{port}{parsed.path}" if parsed.scheme else "<relative URL>"


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


_QUERY_IN_TEXT = re.compile(r"\?\S+?(?=:?(?:\s|$))")  # "watch?token=…:" — a query string without its URL


def redact_urls(text: str) -> str:
    """``text`` with every URL in it cut as ``loggable_url`` cuts one, and any other query string dropped: for
    messages that quote URLs and the names made from them (yt-dlp's "[generic] watch?token=…: Downloading")."""
    return _QUERY_IN_TEXT.sub("", _URL_IN_TEXT.sub(lambda found: loggable_url(found.group(0)), text))


def redirect_limit_reached(url: str, limit: int) -> MediaFetchFailed:
    """The error for a redirect chain longer than ``VCHAT_MEDIA_MAX_REDIRECTS`` (direct files and pages alike)."""
    return MediaFetchFailed(f"{url} redirected more than {limit} times: the redirect limit was reached "
                            f"(VCHAT_MEDIA_MAX_REDIRECTS={limit})", code="too_many_redirects")


class Hops:
    """The hops of one request: ``check`` before sending each, ``after`` each answer (the next hop, or None)."""

    def __init__(self, first: httpx2.Request, policy: HostPolicy, limit: int) -> None:
        self.first = loggable_url(first.url)
        self.policy = policy
        self.limit = limit
        self.followed = 0

    def check(self, request: httpx2.Request) -> None:
        check_url(request.url, self.policy)  # raises UrlNotAllowed; addresses are checked at connect

    def after(self, response: httpx2.Response) -> httpx2.Request | None:
        if not response.has_redirect_location:
            return None
        if self.followed == self.limit:
            raise redirect_limit_reached(self.first, self.limit)
        target = response.next_request  # None when the Location is not a URL
        if target is None:
            raise MediaFetchFailed(f"{loggable_url(response.url)} redirected to an invalid URL")
        self.followed += 1
        logger.debug("redirect %s -> %s", loggable_url(response.url), loggable_url(target.url))
        return target


async def send_following(client: httpx2.AsyncClient, request: httpx2.Request, policy: HostPolicy, limit: int,
                         before: BeforeSend | None = None) -> httpx2.Response:
    """Send ``request`` with ``stream=True``, following up to ``limit`` checked redirects; the caller closes the
    final response. ``before`` runs on every hop just before it is sent (e.g. to shorten its timeout)."""
    hops = Hops(request, policy, limit)
    while True:
        hops.check(request)
        if before is not None:
            before(request)
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            following = hops.after(response)
        except BaseException:
            await response.aclose()
            raise
        if following is None:
            return response
        await response.aclose()
        request = following


def send_following_sync(client: httpx2.Client, request: httpx2.Request, policy: HostPolicy, limit: int,
                        before: BeforeSend | None = None) -> httpx2.Response:
    """The blocking twin of ``send_following`` (the same ``Hops``), for yt-dlp's worker thread."""
    hops = Hops(request, policy, limit)
    while True:
        hops.check(request)
        if before is not None:
            before(request)
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            following = hops.after(response)
        except BaseException:
            response.close()
            raise
        if following is None:
            return response
        response.close()
        request = following
