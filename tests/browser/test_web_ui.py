"""The web page at ``/`` in a real browser: Debian's chromium, headless, driven by Playwright's Python API.

Against the real gateway (real uvicorn) and the session's real vLLM-CPU server with the taught tiny model, whose
greedy answer to QUESTION about the test clip is "B", grounded in [1.0, 2.5] s by round 1. Playwright's Python
package launches the system chromium (``executable_path``); it never downloads a browser. Screenshots go to
var/screenshots/.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import GatewayFactory, LiveGateway, VllmHandle
from tests.integration.test_models_and_ready import load_random_adapter
from tests.support.clips import make_subtitled_clip
from tests.support.origin import Origin
from vllm_launch.stack import ROOT

QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"
SCREENSHOTS = ROOT / "var" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ANSWER_TIMEOUT_MS = 120_000
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-default-browser-check", "--disable-default-apps",
    "--disable-domain-reliability", "--no-proxy-server",
    # Belt and braces for "loopback only": the browser cannot resolve any name (the tests use 127.0.0.1).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

pytestmark = pytest.mark.vllm


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Debian's chromium is missing: `make browser-deps` (or `apt-get install chromium`) installs it.")
    return found


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless chromium for the module; every test gets fresh contexts (a fresh profile: launch() makes a
    temporary user-data-dir, so no state survives between runs)."""
    chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Opens the page of a gateway in a fresh context; fails the test on any uncaught script error."""
    contexts = []
    errors: list[str] = []

    def open_(gateway: LiveGateway, viewport: dict[str, int] = DESKTOP, wait_models: bool = True) -> Page:
        context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{gateway.url}/")
        if wait_models:
            expect(page.locator("#model option[value='videochat-r1.5']")).to_be_attached()
        return page

    yield open_
    for context in contexts:
        context.close()
    assert errors == [], f"script errors in the page: {errors}"


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def load_url(page: Page, url: str) -> None:
    page.fill("#video-url", url)
    page.click("#load-url")


def wait_playable(page: Page) -> None:
    """The sanitized copy is playing in the <video> (metadata read: duration known)."""
    expect(page.locator("#facts-box")).to_be_visible(timeout=60_000)
    page.wait_for_function("() => { const v = document.getElementById('player');"
                           " return v.readyState >= 1 && Math.abs(v.duration - 6) < 0.2; }", timeout=30_000)


def settings(page: Page, *, temperature: str = "0", iterations: str = "2", max_tokens: str = "64") -> None:
    if page.locator("#settings").get_attribute("open") is None:
        page.click("#settings > summary")  # the settings panel starts closed
    page.fill("#temperature", temperature)
    page.fill("#iterations", iterations)
    page.fill("#max-tokens", max_tokens)


def ask(page: Page, question: str) -> tuple[dict[str, Any], Any]:
    """Types and sends a question; returns the request body the page sent and the finished answer's element."""
    page.fill("#question", question)
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions") and r.method == "POST") as sent:
        page.click("#ask")
    answer = page.locator("#thread .msg.assistant").last
    expect(answer).to_have_attribute("data-state", re.compile("done|error|stopped"), timeout=ANSWER_TIMEOUT_MS)
    return json.loads(sent.value.post_data or "{}"), answer


def current_time(page: Page) -> float:
    return float(page.evaluate("document.getElementById('player').currentTime"))


WATCH_STREAM = """() => {
  window.snapshots = [];
  new MutationObserver(() => {
    const msg = [...document.querySelectorAll('#thread .msg.assistant')].pop();
    if (msg) window.snapshots.push({state: msg.dataset.state, content: msg.querySelector('.content').textContent,
                                    rounds: msg.querySelectorAll('.thinking .round').length});
  }).observe(document.getElementById('thread'), {subtree: true, childList: true, characterData: true,
                                                  attributes: true});
}"""


def test_the_timeline_shows_the_subtitle_lines_the_rounds_read(gw: LiveGateway, origin: Origin,
                                                                 open_page: OpenPage) -> None:
    url = origin.file("/subtitled.mp4", make_subtitled_clip().read_bytes())
    page = open_page(gw)
    load_url(page, url)
    wait_playable(page)
    settings(page)
    _, answer = ask(page, QUESTION)
    expect(answer).to_have_attribute("data-state", "done")
    timeline = page.locator("#timeline")
    expect(timeline.locator(".tl-label")).to_have_text(["Round 1", "Round 2", "Subtitles", "Answer"])
    lines = timeline.locator("button.sub")
    expect(lines).to_have_text(["The red fox jumps.", "Over the lazy dog.", "It & its friend run away."])
    assert lines.nth(2).get_attribute("title") == "4.2–5.6 s: It & its friend run away."
    lines.nth(1).click()
    page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 2.5) < 0.05")


def test_url_question_streams_the_answer_and_the_timeline_seeks(
        gw: LiveGateway, origin: Origin, clip: Path, open_page: OpenPage) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    page = open_page(gw)
    load_url(page, url)
    wait_playable(page)
    facts = page.locator("#facts").inner_text()
    assert "6.0 s" in facts and "320×240" in facts and "30 fps" in facts and "h264" in facts and "aac" in facts
    settings(page)
    page.evaluate(WATCH_STREAM)
    body, answer = ask(page, QUESTION)

    assert body["model"] == "videochat-r1.5" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["max_tokens"] == 64 and body["vchat"] == {"iterations": 2}
    assert body["messages"][0]["content"][0] == {"type": "video_url", "video_url": {"url": url}}
    expect(answer).to_have_attribute("data-state", "done")
    assert answer.locator(".content").inner_text() == "B"
    # Streamed: the rounds' reasoning showed up one round at a time while the answer was still coming.
    snapshots = page.evaluate("window.snapshots")
    streaming = [s for s in snapshots if s["state"] == "streaming"]
    assert {s["rounds"] for s in streaming} >= {1, 2}
    assert any(s["content"] == "" and s["rounds"] >= 1 for s in streaming)
    assert "tokens" in answer.locator(".usage").inner_text()

    # The thinking panel holds each round's reasoning.
    answer.locator(".thinking summary").click()
    thinking = answer.locator(".thinking")
    # First the gateway's own note, sent as soon as the video was accepted; then each round.
    expect(thinking.locator("h4")).to_have_text(["Notes", "Round 1 of 2", "Round 2 of 2"])
    expect(thinking).to_contain_text("Watching the video (")
    expect(thinking).to_contain_text("The bars move.")

    # The timeline: ticks for each round's frames, round 1's segment, and the answer's grounding.
    timeline = page.locator("#timeline")
    expect(timeline).to_be_visible()
    expect(timeline.locator(".tl-label")).to_have_text(["Round 1", "Round 2", "Answer"])
    assert timeline.locator(".tl-track").first.locator(".tick").count() >= 4
    round_one = timeline.locator(".tl-track").first.locator("button.seg")
    expect(round_one).to_have_text(["1.0–2.5 s"])
    assert current_time(page) < 0.5
    round_one.click()
    page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 1.0) < 0.05")
    # Keyboard: the answer's segment is a button; Enter on it seeks too.
    page.evaluate("document.getElementById('player').currentTime = 4")
    page.wait_for_function("document.getElementById('player').currentTime > 3.9")
    final = timeline.locator("button.seg.final")
    expect(final).to_have_text(["1.0–2.5 s"])
    final.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 1.0) < 0.05")
    assert current_time(page) == pytest.approx(1.0, abs=0.05)
    screenshot(page, "desktop-answer", full_page=False)  # what a person sees (the chat pane is sticky)

    # A follow-up sends the history (the video rides in the first message) and the URL comes from the cache.
    body, answer = ask(page, QUESTION)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1] == {"role": "assistant", "content": "B"}
    assert body["messages"][0]["content"][0]["video_url"]["url"] == url and body["messages"][2]["content"] == QUESTION
    expect(answer).to_have_attribute("data-state", "done")
    assert answer.locator(".content").inner_text() == "B"
    assert origin.hits["/clip.mp4"] == 1


def test_a_question_without_a_video_is_plain_chat(gw: LiveGateway, open_page: OpenPage) -> None:
    """No video loaded: the question goes to the model as text, and the answer says it was plain chat."""
    page = open_page(gw)
    expect(page.locator("#thread")).to_be_empty()
    settings(page, max_tokens="16")
    body, answer = ask(page, "Hello, who are you?")
    assert body["messages"] == [{"role": "user", "content": "Hello, who are you?"}]
    expect(answer).to_have_attribute("data-state", "done")
    assert answer.locator(".content").inner_text().strip()
    expect(answer.locator(".usage")).to_contain_text("plain chat, no video")
    expect(answer.locator(".thinking")).to_be_hidden()
    expect(page.locator("#timeline")).to_be_hidden()
    # A follow-up carries the conversation, still without a video.
    body, answer = ask(page, "And what can you do?")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    expect(answer).to_have_attribute("data-state", "done")
    screenshot(page, "desktop-plain-chat", full_page=False)


def test_upload_and_ask_at_phone_width(gw: LiveGateway, clip: Path, open_page: OpenPage) -> None:
    page = open_page(gw, viewport=PHONE)
    page.set_input_files("#video-file", str(clip))
    wait_playable(page)
    expect(page.locator("#video-caption")).to_contain_text("uploaded as file-")
    settings(page)
    body, answer = ask(page, QUESTION)
    part = body["messages"][0]["content"][0]
    assert part["type"] == "file" and part["file"]["file_id"].startswith("file-")
    expect(answer).to_have_attribute("data-state", "done")
    assert answer.locator(".content").inner_text() == "B"
    expect(page.locator("#timeline button.seg.final")).to_have_text(["1.0–2.5 s"])
    # Nothing sticks out sideways at phone width, and every control is on screen.
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    for control in ("#video-url", "#video-file", "#model", "#temperature", "#question", "#ask"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, control
    screenshot(page, "phone-upload-answer")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "phone-top", full_page=False)


def test_dropping_a_file_or_a_link_loads_it(gw: LiveGateway, origin: Origin, clip: Path, open_page: OpenPage) -> None:
    page = open_page(gw)
    data = base64.b64encode(clip.read_bytes()).decode()
    page.evaluate("""(data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const drop = new DataTransfer();
      drop.items.add(new File([bytes], 'dropped.mp4', {type: 'video/mp4'}));
      document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: drop, bubbles: true, cancelable: true}));
    }""", data)
    wait_playable(page)
    expect(page.locator("#video-caption")).to_contain_text("dropped.mp4 (uploaded as file-")
    url = origin.file("/linked.mp4", clip.read_bytes())
    page.evaluate("""(url) => {
      const drop = new DataTransfer();
      drop.setData('text/uri-list', url);
      document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: drop, bubbles: true, cancelable: true}));
    }""", url)
    expect(page.locator("#video-caption")).to_have_text(url, timeout=60_000)
    assert page.locator("#video-url").input_value() == url


def test_an_adapter_picked_in_the_picker_answers(vllm: VllmHandle, gw: LiveGateway, origin: Origin, clip: Path,
                                                 open_page: OpenPage) -> None:
    load_random_adapter(vllm)
    page = open_page(gw)
    expect(page.locator("#model optgroup[label='Adapters'] option[value='random-r8']")).to_be_attached()
    expect(page.locator("#merge")).to_be_disabled()  # no Gemini here: merge modes mean nothing
    page.select_option("#model", "random-r8")
    load_url(page, origin.file("/clip.mp4", clip.read_bytes()))
    wait_playable(page)
    settings(page, iterations="1", max_tokens="16")
    body, answer = ask(page, QUESTION)
    assert body["model"] == "random-r8"
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".who .model")).to_have_text("random-r8")  # the model the response names


def test_errors_are_readable_messages(gw: LiveGateway, origin: Origin, clip: Path, open_page: OpenPage) -> None:
    page = open_page(gw)
    error = page.locator("#video-error")
    # A text file dressed up as a video: the gateway's 415 message, not JSON.
    load_url(page, origin.file("/notes.mp4", b"These are my notes, not a video.\n" * 200, "video/mp4"))
    expect(error).to_be_visible(timeout=60_000)
    text = error.inner_text()
    assert "video" in text.lower() and not text.lstrip().startswith("{"), text
    screenshot(page, "error-not-a-video", full_page=False)
    # A scheme the gateway never fetches.
    load_url(page, "ftp://x")
    # The page clears the old message when a load starts, so wait for the new one itself (not just a change).
    expect(error).to_have_text(re.compile(r"Could not use this video: .*(ftp|http)", re.IGNORECASE), timeout=60_000)
    expect(page.locator("#player-box")).to_be_hidden()
    screenshot(page, "error-bad-url", full_page=False)

    # A refused question (before any answer streams): the gateway's 400 message in the answer's place.
    load_url(page, origin.file("/clip.mp4", clip.read_bytes()))
    wait_playable(page)
    settings(page, iterations="99")
    _, answer = ask(page, QUESTION)
    expect(answer).to_have_attribute("data-state", "error")
    expect(answer.locator(".error")).to_contain_text("vchat.iterations may be at most")

    # An error event in the middle of a stream (headers already sent): shown under what had arrived.
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "videochat-r1.5",
             "choices": [{"index": 0, "delta": {"reasoning_content": "Round 1/2: 12 frames.\n"},
                          "finish_reason": None}]}
    failure = {"error": {"message": "vLLM stopped answering mid-way.", "type": "service_unavailable",
                         "param": None, "code": "backend_unavailable"}}
    sse = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(failure)}\n\ndata: [DONE]\n\n"
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body=sse))
    settings(page, iterations="2")
    _, answer = ask(page, QUESTION)
    expect(answer).to_have_attribute("data-state", "error")
    expect(answer.locator(".error")).to_have_text("vLLM stopped answering mid-way.")
    expect(answer.locator(".thinking h4")).to_have_text(["Round 1 of 2"])
    screenshot(page, "desktop-errors", full_page=False)


def test_api_key_asked_for_on_401_and_sent(vllm: VllmHandle, gateway_factory: GatewayFactory, origin: Origin,
                                            clip: Path, open_page: OpenPage) -> None:
    gw = gateway_factory(vllm_url=vllm.base_url, api_keys="s3cret-key")
    page = open_page(gw, wait_models=False)  # the page itself needs no key
    expect(page.locator("#chat-error")).to_contain_text("Missing API key")
    expect(page.locator("#key-hint")).to_contain_text("needs an API key")
    expect(page.locator("#api-key")).to_be_focused()
    page.fill("#api-key", "s3cret-key")
    page.keyboard.press("Tab")
    expect(page.locator("#model option[value='videochat-r1.5']")).to_be_attached()
    expect(page.locator("#chat-error")).to_be_hidden()
    with page.expect_request(lambda r: r.url.endswith("/v1/videos")) as sent:
        load_url(page, origin.file("/clip.mp4", clip.read_bytes()))
    assert sent.value.headers.get("authorization") == "Bearer s3cret-key"
    wait_playable(page)  # played from a blob: a <video> cannot send the key itself
    assert page.evaluate("document.getElementById('player').src").startswith("blob:")
    assert page.evaluate("localStorage.getItem('vchat.apiKey')") == "s3cret-key"
