"""GET /v1/models through the gateway vs vLLM's own, interleaved, 200 requests each: p50/p99 and ratio.

    .venv/bin/python bench/models_overhead.py [--requests 200] [--vllm URL] [--gateway URL]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx2
from stack import local_stack


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--vllm")
    parser.add_argument("--gateway")
    options = parser.parse_args()
    with local_stack(options.vllm, options.gateway) as stack, httpx2.Client(timeout=30) as http:
        targets = {"vllm": f"{stack.vllm_url}/v1/models", "gateway": f"{stack.gateway_url}/v1/models",
                   # The gateway's floor: a route that calls nothing (uvicorn + FastAPI + middleware).
                   "gw-health": f"{stack.gateway_url}/health"}
        for url in targets.values():  # warm connections and caches
            for _ in range(10):
                http.get(url).raise_for_status()
        times: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(options.requests):
            for name, url in targets.items():
                started = time.perf_counter()
                http.get(url).raise_for_status()
                times[name].append((time.perf_counter() - started) * 1000)
    print(f"GET /v1/models, {options.requests} requests each, interleaved (gw-health: the gateway's /health)")
    print(f"{'target':<9} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in times.items():
        print(f"{name:<9} {percentile(values, 50):8.2f} {percentile(values, 99):8.2f} {statistics.mean(values):8.2f}")
    for q in (50, 99):
        ratio = percentile(times["gateway"], q) / percentile(times["vllm"], q)
        print(f"ratio gateway/vllm p{q}: {ratio:.2f}")
    overhead = percentile(times["gateway"], 50) - percentile(times["vllm"], 50)
    print(f"gateway overhead at p50: {overhead:.2f} ms")


if __name__ == "__main__":
    main()
