"""On the GPU machine: starts the gateway exactly as `python -m gateway serve` does, plus one benchmark hook: while
the file $BENCH_CAPTURE_DIR/on exists, every chat call the perception loop makes to vLLM is also written there as
JSON (the SDK keyword arguments), so bench_gateway.py can replay the very same frames and prompt straight to vLLM.
With the flag file absent the hook costs one stat() per round. Run with the project root on PYTHONPATH."""

import json
import os
import time

from gateway.backends import vllm as _vllm

_orig = _vllm.VllmBackend.chat_stream
_dir = os.environ.get("BENCH_CAPTURE_DIR", "")


async def _chat_stream(self, params):  # type: ignore[no-untyped-def]
    if _dir and os.path.exists(os.path.join(_dir, "on")):  # noqa: ASYNC240 - a benchmark hook, one stat a round
        with open(os.path.join(_dir, f"{time.time_ns()}.json"), "w") as f:  # noqa: ASYNC230
            json.dump(params, f)
    return await _orig(self, params)


_vllm.VllmBackend.chat_stream = _chat_stream  # type: ignore[method-assign]

from gateway.cli import main  # noqa: E402

main(["serve"])
