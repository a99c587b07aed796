"""Resolves a video page (YouTube, Vimeo, any site yt-dlp knows, a plain page with ``<video>``) to one file URL.

yt-dlp runs as a library in a worker thread and downloads no media here: ``extract_info(url, download=False)``.

SSRF: every HTTP request yt-dlp makes (the page, each redirect hop, extractors' API calls, HLS/DASH manifests)
goes through ``GuardedRH``, a yt-dlp request handler (``yt_dlp/networking/common.py: RequestHandler``) that sends
over httpx2 with ``transport.GuardedTransport`` (each connect checks the resolved IP) and follows redirects with
``redirects.send_following_sync`` (``guard.check_url`` on the first URL and on every hop before it is sent).
``GuardedYoutubeDL`` makes it the *only* handler: it overrides ``YoutubeDL._request_director``
(``yt_dlp/YoutubeDL.py``, the cached ``RequestDirector`` behind ``YoutubeDL.urlopen``, through which all extractor
traffic passes) with one built by the public ``build_request_director([GuardedRH])``, so yt-dlp's
urllib/requests/curl_cffi/websockets handlers are never instantiated. The chosen media URL is checked with
``check_url`` as well; the gateway downloads it later with its own guarded client.

A refusal (guard, live stream, too long, no progressive format) is recorded on the run's ``Session`` and
yt-dlp is aborted with an exception it does not swallow; whatever yt-dlp then raises, the recorded refusal is
what the caller sees. Other yt-dlp errors become ``MediaFetchFailed`` / ``MediaRejected`` in plain words.

Timeout: a thread cannot be killed, so ``resolve_page`` stops *waiting* after ``timeout_s`` and marks the
session cancelled; the handler refuses every later request and every body read checks the deadline, and each
request's socket timeout is ``min(10 s, time left)``, so the worker thread ends soon after the deadline.

    links.py    which links are pages, files, or worth treating as the video; YouTube's canonical watch URL
    formats.py  the one progressive format fetched; live streams and over-long videos refused
    captions.py the caption track fetched beside it: the page's own before automatic ones, languages by setting
    resolve.py  ``resolve_page`` and ``PageMedia``: yt-dlp in a worker thread under the deadline
    session.py  one resolution's state (policy, deadline, caps, first refusal) and yt-dlp's parameters
    handler.py  ``GuardedRH``, the one request handler yt-dlp gets, and the YoutubeDL that holds only it
    errors.py   yt-dlp's errors in plain words
"""

from gateway.media.pages.captions import CaptionTrack
from gateway.media.pages.formats import MAX_HEIGHT, STREAMING_ONLY, check_info, choose_format
from gateway.media.pages.links import is_video_link, looks_like_page, youtube_watch_url
from gateway.media.pages.resolve import PageMedia, resolve_page

__all__ = [
    "MAX_HEIGHT",
    "STREAMING_ONLY",
    "CaptionTrack",
    "PageMedia",
    "check_info",
    "choose_format",
    "is_video_link",
    "looks_like_page",
    "resolve_page",
    "youtube_watch_url",
]
