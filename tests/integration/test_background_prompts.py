"""Chat UIs' background prompts (title, tags, follow-ups) through the openai SDK: plain chat, no perception job.

The count comes from the gateway's own /metrics: one user question about a video is one perception job, however
many background prompts quoting its link the client sends afterwards.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveGateway
from tests.support.background_prompts import BACKGROUND, LINK
from tests.support.origin import Origin

GREEDY = {"temperature": 0, "max_tokens": 16}


def samples(gw: LiveGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{gw.url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_one_question_is_one_perception_job_whatever_the_client_sends_after(gw: LiveGateway, origin: Origin,
                                                                            clip: Path) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=300)
    question = f"what happens in {url}?"
    answer = client.chat.completions.create(model="videochat-r1.5", messages=[{"role": "user", "content": question}],
                                            extra_body={"vchat": {"iterations": 2}}, **GREEDY)  # type: ignore[arg-type]
    assert answer.model_extra["perception"]["rounds"]
    for text, (client_name, task) in BACKGROUND:
        reply = client.chat.completions.create(model="videochat-r1.5", **GREEDY, messages=[  # type: ignore[arg-type]
            {"role": "user", "content": text.replace(LINK, url)}])
        assert reply.choices[0].message.content is not None
        assert "perception" not in (reply.model_extra or {}), (client_name, task)  # plain chat: no video facts
    # Streamed, as some clients ask for titles.
    text, _ = BACKGROUND[0]
    chunks = list(client.chat.completions.create(model="videochat-r1.5", stream=True, **GREEDY, messages=[
        {"role": "user", "content": text.replace(LINK, url)}]))  # type: ignore[arg-type]
    assert chunks and all("perception" not in (c.model_extra or {}) for c in chunks)

    metrics = samples(gw)
    assert metrics[("vchat_answers_total", (("outcome", "ok"),))] == 1
    rounds = sum(v for (name, _), v in metrics.items() if name == "vchat_perception_rounds_total")
    assert rounds == 2  # the question's two rounds, nothing for the background prompts
    assert metrics[("vchat_background_prompts_total", (("client", "open-webui"), ("task", "title")))] == 3
    counted = sum(v for (name, _), v in metrics.items() if name == "vchat_background_prompts_total")
    assert counted == len(BACKGROUND) + 1
    assert origin.hits["/clip.mp4"] == 1  # fetched for the question only
