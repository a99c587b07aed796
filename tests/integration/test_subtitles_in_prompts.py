"""A video's subtitles in the rounds' prompts, through the real gateway over HTTP: vLLM's network is a MockTransport
that keeps what each round sent (the real vLLM-CPU test is at the end)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory, LiveGateway
from tests.support.clips import make_clip, make_subtitled_clip
from tests.support.origin import Origin
from tests.support.questions import ask_inline
from tests.support.vllm_wire import MODEL, FakeVllm, stream_reply

QUESTION = "What does the fox do?\nA. sleeps\nB. jumps"
GLUED = ["<think>", "fox", "</think>", "<answer>", "B", "</answer>", "<glue>", "[(4.0, 5.9)]", "</glue>"]
ANSWER = ["<think>", "fox", "</think>", "<answer>", "B", "</answer>"]
LINES = [(0.5, 1.8, "The red fox jumps."), (2.5, 3.9, "Over the lazy dog."), (4.2, 5.6, "It & its friend run away.")]
HEAD = "This video's subtitles are listed below: \n"


def ask(gw: LiveGateway, clip: Path, **vchat: Any) -> dict[str, Any]:
    return ask_inline(gw.url, clip, QUESTION, timeout=120, **vchat)


def prompts(vllm: FakeVllm) -> list[str]:
    return [sent["messages"][0]["content"][1]["text"] for sent in vllm.requests]


def covering(times: list[float]) -> list[str]:
    """eval_longvideo.py's rule, on the times of the frames a round sent."""
    kept = []
    for start, end, text in LINES:
        if end - start < 1:
            start, end = (start + end) / 2 - 0.5, (start + end) / 2 + 0.5
        if any(start < t < end for t in times):
            kept.append(text)
    return kept


@pytest.fixture
def fake() -> FakeVllm:
    return FakeVllm([stream_reply(GLUED), stream_reply(ANSWER)])


def test_each_round_carries_the_lines_its_frames_cover(gateway_factory: GatewayFactory, fake: FakeVllm) -> None:
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport())
    answer = ask(gw, make_subtitled_clip())
    rounds = answer["perception"]["rounds"]
    sent = prompts(fake)
    assert len(sent) == 2
    for prompt, record in zip(sent, rounds, strict=True):
        lines = covering(record["frame_times"])
        assert lines, record["frame_times"]
        assert prompt.startswith(HEAD + "\n".join(lines) + ".\n Select the best answer to the following "
                                 "multiple-choice question based on the video and the subtitles. Answer the question: ")
    assert "in the <glue> </glue> tags" in sent[0] and "in the <glue> </glue> tags" not in sent[1]
    assert answer["perception"]["warnings"] == []


def test_off_or_no_subtitles_sends_the_plain_prompt(gateway_factory: GatewayFactory, fake: FakeVllm) -> None:
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport())
    ask(gw, make_subtitled_clip(), subtitles="off")
    ask(gw, make_clip(), subtitles="auto")
    assert [prompt.startswith('Answer the question: "What does the fox do?"') for prompt in prompts(fake)] == [True] * 4


def test_lines_over_the_rounds_budget_are_thinned_with_a_warning(gateway_factory: GatewayFactory,
                                                                  fake: FakeVllm) -> None:
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport(), subtitle_prompt_tokens=40)
    answer = ask(gw, make_subtitled_clip())
    for prompt in prompts(fake):
        listed = prompt.removeprefix(HEAD).split(".\n Select", 1)[0]
        assert 1 <= len(listed.split("\n")) < 3
    assert any("subtitle lines" in warning and "VCHAT_SUBTITLE_PROMPT_TOKENS" in warning
               for warning in answer["perception"]["warnings"])


def test_a_bad_vchat_subtitles_value_is_refused(gateway_factory: GatewayFactory, fake: FakeVllm) -> None:
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport())
    body = {"model": MODEL, "vchat": {"subtitles": "always"}, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "vchat.subtitles" and "'auto' or 'off'" in error["message"]


def test_the_answer_shows_the_transcript_and_the_lines_of_each_round(gateway_factory: GatewayFactory,
                                                                     fake: FakeVllm) -> None:
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport())
    perception = ask(gw, make_subtitled_clip())["perception"]
    transcript = perception["transcript"]
    assert {key: transcript[key] for key in ("source", "language", "lines", "in_prompt")} == {
        "source": "container", "language": "eng", "lines": 3, "in_prompt": True}
    for shown, record, prompt in zip(transcript["rounds"], perception["rounds"], prompts(fake), strict=True):
        assert shown["round"] == record["round"]
        assert [line["text"] for line in shown["lines"]] == covering(record["frame_times"])
        assert all(f"{line['text']}" in prompt for line in shown["lines"])
    assert transcript["rounds"][0]["lines"][0] == {"start": 0.5, "end": 1.8, "text": "The red fox jumps."}
    plain = ask(gw, make_clip())["perception"]
    assert plain["transcript"] is None and not any("subtitle" in warning for warning in plain["warnings"])


def test_a_hostile_subtitle_track_is_capped_and_stays_text(gateway_factory: GatewayFactory, fake: FakeVllm) -> None:
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport(), subtitles_max_lines=50)
    cues = "".join(f"{i}\n00:00:0{i % 6},000 --> 00:00:0{i % 6},900\n<script>alert({i})</script>"
                   f"<b>line</b> {i}\n\n" for i in range(1, 500))
    perception = ask(gw, make_subtitled_clip(cues, container="mkv", scodec="ass"))["perception"]
    assert perception["transcript"]["lines"] == 50
    assert any("more than 50 lines" in warning for warning in perception["warnings"])
    for prompt in prompts(fake):
        assert "<script>" not in prompt and "<b>" not in prompt and "alert(" in prompt


def test_a_pages_captions_reach_the_prompt(gateway_factory: GatewayFactory, fake: FakeVllm, origin: Origin) -> None:
    origin.file("/clip.mp4", make_clip().read_bytes())
    origin.file("/en.vtt", b"WEBVTT\n\n00:01.000 --> 00:04.000\nA caption from the page.\n", content_type="text/vtt")
    url = origin.page("/watch", '<!DOCTYPE html><html><head><title>t</title></head><body><video src="/clip.mp4">'
                                '<track kind="captions" src="/en.vtt" srclang="en"></video></body></html>')
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport())
    body = {"model": MODEL, "vchat": {"iterations": 1, "max_frames": 8},
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                      {"type": "text", "text": QUESTION}]}]}
    response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    transcript = response.json()["perception"]["transcript"]
    assert (transcript["source"], transcript["language"]) == ("captions", "en")
    assert prompts(fake)[0].startswith(HEAD + "A caption from the page..\n Select the best answer")


# --- the real vLLM-CPU server (taught tiny model) ------------------------------------------------------------------


def test_real_vllm_reads_each_rounds_subtitles(gw: LiveGateway) -> None:
    """vLLM tokenizes the subtitle lines with the round's frames: every round that carries lines costs more prompt
    tokens than the same round asked with vchat.subtitles off, on exactly the same frames; the answer still comes."""
    clip = make_subtitled_clip()
    url = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
    question = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"

    def ask_real(subtitles: str) -> dict[str, Any]:
        body = {"model": MODEL, "temperature": 0, "max_tokens": 64,
                "vchat": {"iterations": 2, "subtitles": subtitles},
                "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                          {"type": "text", "text": question}]}]}
        response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=300)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    heard, deaf = ask_real("auto"), ask_real("off")
    with_lines = heard["perception"]["transcript"]["rounds"]
    assert [r["frame_times"] for r in heard["perception"]["rounds"]] == \
        [r["frame_times"] for r in deaf["perception"]["rounds"]]
    assert deaf["perception"]["transcript"]["in_prompt"] is False
    assert all(r["lines"] == [] for r in deaf["perception"]["transcript"]["rounds"])
    for shown, loud, quiet in zip(with_lines, heard["perception"]["rounds"], deaf["perception"]["rounds"], strict=True):
        assert [line["text"] for line in shown["lines"]] == covering(loud["frame_times"])
        extra = loud["usage"]["prompt_tokens"] - quiet["usage"]["prompt_tokens"]
        assert (extra > 20) if shown["lines"] else (extra == 0), (shown, extra)
    assert heard["choices"][0]["message"]["content"]
