"""On the GPU machine: starts the gateway exactly as `python -m gateway serve` does, with one benchmark seam: the
perception loop's rounds go through `Capturing`, which, while the file $BENCH_CAPTURE_DIR/on exists, also writes
each round's call there as JSON (the SDK keyword arguments), so bench_gateway.py can replay the very same frames and
prompt straight to vLLM. With the flag file absent it costs one stat() per round. Run with the project root on
PYTHONPATH."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncGenerator

import uvicorn

from gateway.app import create_app
from gateway.backends.vllm import Generated, RoundCall, VllmBackend
from gateway.logs import configure_logging
from gateway.serving import uvicorn_config
from vchat.cli import load_settings


class Capturing:
    """The vLLM backend as the loop's RoundModel, recording each round's call while the flag file exists."""

    def __init__(self, vllm: VllmBackend, folder: str) -> None:
        self.vllm, self.folder = vllm, folder

    async def max_model_len(self, model: str) -> int | None:
        return await self.vllm.max_model_len(model)

    async def round_stream(self, call: RoundCall) -> AsyncGenerator[Generated, None]:
        if self.folder and os.path.exists(os.path.join(self.folder, "on")):  # noqa: ASYNC240 - one stat a round
            with open(os.path.join(self.folder, f"{time.time_ns()}.json"), "w") as f:  # noqa: ASYNC230
                json.dump(call.params(), f)
        return await self.vllm.round_stream(call)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    folder = os.environ.get("BENCH_CAPTURE_DIR", "")
    app = create_app(settings, round_model=lambda vllm: Capturing(vllm, folder))
    uvicorn.Server(uvicorn_config(app, settings)).run()


if __name__ == "__main__":
    main()
