"""One perception round through the gateway vs the same frames sent straight to vLLM, interleaved: p50/p99, the
ratio and the gateway's own overhead per round; then 16 concurrent requests each way: errors and throughput.

    .venv/bin/python bench/round_overhead.py [--requests 100] [--concurrent 16] [--waves 3] [--vllm URL] [--gateway URL]

The clip (6 s 320x240 H.264 + AAC, tests.support.clips) is served by a loopback origin, so a gateway given with
--gateway must allow it (VCHAT_MEDIA_ALLOWED_HOSTS=127.0.0.1) and share this process's VCHAT_ settings.

The direct request is the one the gateway itself builds: this process runs the gateway's own code in-process
(request schema -> find_video -> VideoLibrary over a scratch media dir -> loop_request -> PerceptionLoop) with a
backend that records the params the round hands to the openai SDK, and sends them to vLLM as the SDK would
(stream with include_usage, extra_body merged into the JSON). Same frames (checked against the gateway's
perception.rounds[0].frame_times), same prompt (checked by prompt_tokens), same max_tokens/temperature/seed.
Both request bodies are serialized once beforehand; the clock runs from sending to the last byte read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from stack import local_stack  # noqa: E402

from gateway.api.schemas import ChatCompletionRequest  # noqa: E402
from gateway.api.video_chat import loop_request  # noqa: E402
from gateway.api.video_refs import find_video, resolve  # noqa: E402
from gateway.backends.vllm import Generated, RoundCall  # noqa: E402
from gateway.media.library import open_library  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.perception.loop import PerceptionLoop, RoundStarted  # noqa: E402
from tests.support.clips import make_clip  # noqa: E402
from tests.support.origin import Origin  # noqa: E402
from vchat_settings import Settings  # noqa: E402

CACHE = ROOT / "var" / "bench-cache"
MODEL = "videochat-r1.5"
QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"
SAMPLING: dict[str, Any] = {"temperature": 0, "seed": 0, "max_tokens": 16}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class _Recorder:
    """The loop's RoundModel, standing in for VllmBackend: keeps the SDK arguments of the round's call and streams
    nothing."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    async def max_model_len(self, model: str) -> int | None:
        return None

    async def round_stream(self, call: RoundCall) -> AsyncGenerator[Generated, None]:
        self.params = call.params()

        async def nothing() -> AsyncGenerator[Generated, None]:
            return
            yield

        return nothing()


async def gateway_params(body: dict[str, Any], media_dir: Path) -> tuple[dict[str, Any], RoundStarted]:
    """The params the gateway's round 1 passes to the openai SDK for this chat body, built by its own code."""
    settings = Settings(vllm_url=None, media_dir=media_dir, media_allowed_hosts=["127.0.0.1"])
    metrics = Metrics()
    async with open_library(settings, metrics) as library:
        request = ChatCompletionRequest.model_validate(body)
        ref = find_video(request.messages)
        assert ref is not None
        asset = await resolve(ref, library)
        recorder = _Recorder()
        loop = PerceptionLoop(recorder, library, settings, metrics)
        events = [event async for event in loop.run(asset, loop_request(request, ref, MODEL, settings))]
    started = next(event for event in events if isinstance(event, RoundStarted))
    return recorder.params, started


def direct_body(params: dict[str, Any]) -> dict[str, Any]:
    """What the openai SDK sends for chat.completions.create(**params, stream=True)."""
    body = {key: value for key, value in params.items() if key not in ("extra_headers", "extra_body")}
    return {**body, **params.get("extra_body", {}), "stream": True}


class Client:
    """Times one request each way; both bodies pre-serialized."""

    def __init__(self, http: httpx2.AsyncClient, gateway_url: str, vllm_url: str, gateway: bytes,
                 direct: bytes) -> None:
        self.http, self.gateway_bytes, self.direct_bytes = http, gateway, direct
        self.gateway_url = f"{gateway_url}/v1/chat/completions"
        self.vllm_url = f"{vllm_url}/v1/chat/completions"
        self.count = 0

    async def gateway(self) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = await self.http.post(self.gateway_url, content=self.gateway_bytes,
                                         headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed * 1000, response.json()

    async def direct(self) -> tuple[float, dict[str, Any]]:
        self.count += 1
        headers = {"Content-Type": "application/json", "X-Request-Id": f"bench-direct-{self.count}"}
        usage: dict[str, Any] = {}
        text = ""
        started = time.perf_counter()
        async with self.http.stream("POST", self.vllm_url, content=self.direct_bytes, headers=headers) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    usage = chunk.get("usage") or usage
                    text += "".join(c["delta"].get("content") or "" for c in chunk.get("choices", []))
        elapsed = time.perf_counter() - started
        return elapsed * 1000, {"usage": usage, "text": text}


async def wave(call: Any, n: int) -> tuple[float, int]:
    started = time.perf_counter()
    results = await asyncio.gather(*(call() for _ in range(n)), return_exceptions=True)
    return time.perf_counter() - started, sum(isinstance(r, BaseException) for r in results)


async def measure(options: argparse.Namespace, gateway_url: str, vllm_url: str, url: str, scratch: Path) -> None:
    body = {"model": MODEL, "stream": False, "vchat": {"iterations": 1}, **SAMPLING,
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                      {"type": "text", "text": QUESTION}]}]}
    params, started = await gateway_params(body, scratch / "media")
    direct = direct_body(params)
    limits = httpx2.Limits(max_connections=4 * options.concurrent, max_keepalive_connections=4 * options.concurrent)
    async with httpx2.AsyncClient(timeout=600, limits=limits) as http:
        client = Client(http, gateway_url, vllm_url, json.dumps(body).encode(), json.dumps(direct).encode())
        for _ in range(5):  # the gateway fetches, decodes the clip on the first; warm both paths
            _, gw_answer = await client.gateway()
            _, direct_answer = await client.direct()
        first = gw_answer["perception"]["rounds"][0]
        same_frames = first["frame_times"] == list(started.times) and first["frame_size"] == [started.width,
                                                                                              started.height]
        times: dict[str, list[float]] = {"gateway": [], "direct": []}
        for n in range(options.requests):
            # Alternate which goes first, so neither always follows the other.
            order = ("gateway", "direct") if n % 2 == 0 else ("direct", "gateway")
            for name in order:
                elapsed, _ = await (client.gateway() if name == "gateway" else client.direct())
                times[name].append(elapsed)

        walls: dict[str, list[float]] = {"gateway": [], "direct": []}
        errors = {"gateway": 0, "direct": 0}
        for n in range(options.waves):
            order = ("gateway", "direct") if n % 2 == 0 else ("direct", "gateway")
            for name in order:
                wall, failed = await wave(client.gateway if name == "gateway" else client.direct, options.concurrent)
                walls[name].append(wall)
                errors[name] += failed

    kb = len(client.direct_bytes) / 1024
    print(f"clip 6 s 320x240 from loopback, warm; round 1 of 1: {len(started.times)} frames of "
          f"{started.width}x{started.height} ({kb:.0f} KiB request to vLLM), {SAMPLING}")
    print(f"same request both ways: frames {'identical' if same_frames else 'DIFFER'}; prompt_tokens gateway "
          f"{gw_answer['usage']['prompt_tokens']} / direct {direct_answer['usage'].get('prompt_tokens')}; "
          f"completion_tokens {gw_answer['usage']['completion_tokens']} / "
          f"{direct_answer['usage'].get('completion_tokens')}")
    print()
    print(f"one round, {options.requests} requests each, interleaved (gateway: stream=false; direct: vLLM stream "
          f"+ include_usage, as the gateway calls it)")
    print(f"{'target':<8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in times.items():
        print(f"{name:<8} {percentile(values, 50):8.1f} {percentile(values, 99):8.1f} {statistics.mean(values):8.1f}")
    for q in (50, 99):
        print(f"ratio gateway/direct p{q}: {percentile(times['gateway'], q) / percentile(times['direct'], q):.3f}"
              + ("   (target <= 1.10)" if q == 50 else ""))
    overhead = percentile(times["gateway"], 50) - percentile(times["direct"], 50)
    print(f"gateway overhead per round at p50: {overhead:.1f} ms")
    print()
    print(f"{options.concurrent} concurrent requests, {options.waves} waves each, interleaved "
          f"(gateway admission: {Settings().max_active_jobs} active, the rest queue)")
    print(f"{'target':<8} {'errors':>6} {'wall s (median)':>16} {'req/s':>7}")
    rate = {name: options.concurrent / statistics.median(values) for name, values in walls.items()}
    for name, values in walls.items():
        print(f"{name:<8} {errors[name]:>6} {statistics.median(values):16.2f} {rate[name]:7.2f}")
    print(f"throughput ratio gateway/direct: {rate['gateway'] / rate['direct']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--vllm")
    parser.add_argument("--gateway")
    options = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    origin = Origin().start()
    try:
        url = origin.file("/clip.mp4", make_clip().read_bytes())
        with tempfile.TemporaryDirectory(prefix="bench-round-", dir=CACHE) as scratch:
            gateway_env = {"VCHAT_MEDIA_ALLOWED_HOSTS": "127.0.0.1", "VCHAT_MEDIA_DIR": f"{scratch}/gateway-media"}
            with local_stack(options.vllm, options.gateway, gateway_env) as stack:
                asyncio.run(measure(options, stack.gateway_url, stack.vllm_url, url, Path(scratch)))
    finally:
        origin.stop()


if __name__ == "__main__":
    main()
