"""Greedy replies of an adapter to its dataset's first questions, decoded with vLLM's positions (torch).

    python -m training.check --adapter adapters/NAME --data DATA.jsonl [--base MODEL_DIR] [--limit 8]

Prints one JSON object per sample: line, expected (the first assistant turn) and got. transformers' generate()
places text after a video at other positions than vLLM does, so this decodes step by step as vLLM would.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.collate import Encoder
from training.conversation import Turn, prompted
from training.dataset import DatasetInvalid, load_dataset
from training.export import MANIFEST
from training.frames import FrameSettings, VideoFrames
from videochat_r15.decoding import decode_greedy


def greedy(model: Any, encoder: Encoder, turns: Sequence[Turn], frames: VideoFrames, max_new_tokens: int = 64) -> str:
    """The model's greedy reply to turns (which end with a user turn), as vLLM would decode it."""
    return decode_greedy(model, encoder, encoder.prompt(turns, frames), max_new_tokens)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.check", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--adapter", type=Path, required=True, help="adapter directory (with vchat-adapter.json)")
    parser.add_argument("--data", type=Path, required=True, help="JSONL dataset")
    parser.add_argument("--base", type=Path, help="base model (default: the manifest's base_model_path)")
    parser.add_argument("--limit", type=int, default=8, help="samples to decode")
    args = parser.parse_args(argv)
    import torch
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vchat_settings import Settings

    manifest = json.loads((args.adapter / MANIFEST).read_text())
    base = args.base or Path(manifest["base_model_path"])
    training = manifest.get("training", {})
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    with tempfile.TemporaryDirectory(prefix="vchat-check-") as work:
        try:
            dataset = load_dataset(args.data, Path(work), FrameSettings.from_settings(
                Settings(), training.get("frames"), training.get("fps")))
        except DatasetInvalid as exc:
            sys.stderr.write(exc.report() + "\n")
            return 2
        encoder = Encoder(base)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, args.adapter).eval()
        for sample in dataset.samples[: args.limit]:
            turns = prompted(sample.turns, training.get("prompt_format", "r15"))
            first = next(i for i, t in enumerate(turns) if t.role == "assistant")
            got = greedy(model, encoder, turns[:first], dataset.frames[sample.video])
            sys.stdout.write(json.dumps({"line": sample.line, "expected": turns[first].text, "got": got}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
