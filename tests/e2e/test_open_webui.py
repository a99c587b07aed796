"""Open WebUI, the real one, asks vChat about a video in Chromium, as a person would.

The admin account is created on first start, ``videochat-r1.5`` picked, "what happens in <link>?" sent, the
streamed answer shown with the model's reasoning as Open WebUI shows thinking (the collapsible "Thought for …"
block), then a follow-up without the link answered about the same video. The gateway's ``/metrics`` and the clip
origin's hits prove the clip was fetched once, each user question ran one perception job, and Open WebUI's own
title, tags and follow-up prompts were answered as plain chat. Open WebUI's environment: tests/e2e/conftest.py.
Screenshots of both turns go to var/screenshots/; on failure a screenshot and Open WebUI's log.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from tests.browser.test_web_ui import CHROMIUM_ARGS, DESKTOP, SCREENSHOTS, chromium_path
from tests.conftest import LiveGateway
from tests.e2e.conftest import GATEWAY_KEY, MODELS, LiveWebui
from tests.support.origin import Origin

pytestmark = pytest.mark.vllm

MODEL = "videochat-r1.5"
ANSWER_TIMEOUT_MS = 240_000  # two perception rounds on vLLM-CPU beside Open WebUI, on 2 shared cores
STEP_TIMEOUT_MS = 60_000
BACKGROUND_TIMEOUT_S = 240


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class ChatCalls:
    """Counts the gateway's finished ``POST /v1/chat/completions`` from its access log, as each is written."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def record(self, record: logging.LogRecord) -> None:
        if getattr(record, "route", None) == "/v1/chat/completions":
            with self._changed:
                self.count += 1
                self._changed.notify_all()

    def wait_for(self, count: int, why: str) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.count >= count, timeout=BACKGROUND_TIMEOUT_S):
                raise AssertionError(f"{why}: the gateway finished {self.count} chat calls, expected {count}")


@contextlib.contextmanager
def chat_calls() -> Iterator[ChatCalls]:
    calls = ChatCalls()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            calls.record(record)

    watch, logger = Watch(), logging.getLogger("gateway.access")
    level = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    try:
        yield calls
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@contextlib.contextmanager
def evidence(page: Page, webui: LiveWebui) -> Iterator[None]:
    """A step that does not happen fails with a screenshot of the page and Open WebUI's log."""
    try:
        yield
    except Exception as exc:
        shot = screenshot(page, "open-webui-failure")
        raise AssertionError(f"{exc}\nscreenshot: {shot}\nOpen WebUI's log ({webui.log_path}):\n"
                             f"{webui.log_tail()}") from exc


def create_admin(page: Page, webui: LiveWebui) -> None:
    """First start: the onboarding screen, then the sign-up form whose first account becomes the admin."""
    page.goto(webui.url)
    page.get_by_role("button", name="Get started").click(timeout=STEP_TIMEOUT_MS)
    page.locator("#name").fill("Ada Admin")
    page.locator("#email").fill("ada@example.test")
    page.locator("#password").fill("correct horse battery staple")
    page.get_by_role("button", name="Create Admin Account").click()
    # An admin's first visit shows the release notes; a person closes them.
    lets_go = page.get_by_role("button", name="Okay, Let's Go!")
    chat_input = page.locator("#chat-input")
    expect(lets_go.or_(chat_input).first).to_be_visible(timeout=STEP_TIMEOUT_MS)
    if lets_go.is_visible():
        lets_go.click()
    expect(chat_input).to_be_visible()


def pick_model(page: Page, model: str) -> None:
    """The model picker (a listbox button reading "Select a model"), then the model's option."""
    picker = page.locator("button[id^='model-selector-'][aria-haspopup='listbox']").first
    picker.click()
    page.get_by_role("option", name=f"Select {model} model").click()
    expect(picker).to_have_attribute("aria-label", f"Selected model: {model}")


def ask(page: Page, text: str) -> Locator:
    """Types and sends ``text``; returns the answer's message once Open WebUI marks it done (its Regenerate
    button appears only then)."""
    answers = page.locator("div[id^='message-']").filter(has=page.locator("#response-content-container"))
    before = answers.count()
    page.locator("#chat-input").fill(text)
    page.get_by_role("button", name="Send message").click()
    expect(answers).to_have_count(before + 1, timeout=STEP_TIMEOUT_MS)
    answer = answers.last
    expect(answer.get_by_role("button", name="Regenerate").first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    return answer


# Every label the latest answer's reasoning toggle shows, in order, as the DOM changes (no polling gap):
# "Thinking..." while the reasoning streams in, "Thought for N seconds" once the answer is done.
WATCH_THINKING = """() => {
  window.vchatLabels = [];
  new MutationObserver(() => {
    const toggle = [...document.querySelectorAll('#response-content-container button[aria-expanded]')].pop();
    const label = toggle ? toggle.innerText.trim() : null;  // innerText: not the spinner's <style>
    if (label && window.vchatLabels[window.vchatLabels.length - 1] !== label) window.vchatLabels.push(label);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def thinking_labels(page: Page) -> list[str]:
    """The labels seen since the last call."""
    return list(page.evaluate("window.vchatLabels.splice(0)"))


def thinking(answer: Locator) -> Locator:
    """The collapsible reasoning block, opened: its button reads "Thought for N seconds" once the answer is done."""
    toggle = answer.get_by_role("button", name=re.compile(r"^Thought"))
    expect(toggle).to_be_visible()
    if toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    return answer


def samples(gw: LiveGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_person_asks_open_webui_about_a_linked_clip_then_follows_up(
        webui: LiveWebui, webui_gateway: LiveGateway, origin: Origin, clip: Path, browser: Browser) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    with chat_calls() as calls, evidence(page, webui):
        create_admin(page, webui)
        pick_model(page, MODEL)
        page.evaluate(WATCH_THINKING)

        first = ask(page, f"what happens in {url}?")
        # The model's reasoning, streamed as reasoning_content, is Open WebUI's thinking block: shown while it
        # streams ("Thinking..."), then collapsed under "Thought for N seconds" and opened here.
        labels = thinking_labels(page)
        assert "Thinking..." in labels and labels[-1].startswith("Thought"), labels
        expect(thinking(first)).to_contain_text("Watching the video")
        expect(first.locator("#response-content-container")).not_to_be_empty()
        screenshot(page, "open-webui-turn-1")
        # Open WebUI's own prompts for a chat's first exchange: title, tags and follow-ups (its backend sends them).
        calls.wait_for(4, "the question and Open WebUI's follow-up, title and tag prompts")

        thinking_labels(page)
        second = ask(page, "and what moves in it?")
        labels = thinking_labels(page)
        assert "Thinking..." in labels and labels[-1].startswith("Thought"), labels
        expect(thinking(second)).to_contain_text("Watching the video")
        screenshot(page, "open-webui-turn-2")
        calls.wait_for(6, "the follow-up question and Open WebUI's follow-up prompt")
    context.close()

    assert not (webui.data_dir / MODELS).exists(), list((webui.data_dir / MODELS).rglob("*"))[:20]
    metrics = samples(webui_gateway)
    assert origin.hits["/clip.mp4"] == 1  # fetched for the first question; the follow-up reused the cached copy
    answers = sum(v for (name, _), v in metrics.items() if name == "vchat_answers_total")
    assert answers == 2 and metrics[("vchat_answers_total", (("outcome", "ok"),))] == 2  # one job per question
    rounds = sum(v for (name, _), v in metrics.items() if name == "vchat_perception_rounds_total")
    assert rounds == 4  # two rounds for each question, none for Open WebUI's own prompts
    background = {key: v for (name, key), v in metrics.items() if name == "vchat_background_prompts_total"}
    assert background == {
        (("client", "open-webui"), ("task", "title")): 1,
        (("client", "open-webui"), ("task", "tags")): 1,
        (("client", "open-webui"), ("task", "follow_ups")): 2,
    }, background
