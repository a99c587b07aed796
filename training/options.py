"""The trainer's command line, parsed into one frozen TrainConfig (no torch needed)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vchat_settings import ALLOWED_LORA_RANKS

PromptFormat = Literal["r15", "raw"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs, as given on the command line."""

    data: Path
    base: Path
    out: Path
    base_name: str | None
    served_name: str | None
    rank: int
    alpha: int
    dropout: float
    lr: float
    epochs: float
    batch_size: int
    grad_accum: int
    seed: int
    max_steps: int | None
    frames: int | None
    fps: float | None
    prompt_format: PromptFormat
    checkpoint_every: int
    checkpoint_dir: Path | None
    keep_checkpoints: int
    resume: bool
    overwrite: bool
    load_in_4bit: bool
    gradient_checkpointing: bool
    progress: bool

    @property
    def name(self) -> str:
        """The adapter's name: the output folder's name, which is the model name clients ask for."""
        return self.out.name

    @property
    def checkpoints(self) -> Path:
        """Where checkpoints go: a hidden folder beside the output, so an adapter registry never lists it."""
        return self.checkpoint_dir or self.out.parent / f".{self.out.name}.checkpoints"


def _rank(value: str) -> int:
    rank = _positive_int(value)
    if rank not in ALLOWED_LORA_RANKS:
        allowed = ", ".join(map(str, ALLOWED_LORA_RANKS))
        raise argparse.ArgumentTypeError(f"{rank} is not a rank vLLM accepts (one of {allowed})")
    return rank


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def _dropout(value: str) -> float:
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.finetune",
        description="LoRA-fine-tune VideoChat-R1.5 (Qwen2.5-VL) on a JSONL dataset of videos and conversations, "
        "and export an adapter vLLM serves under the output folder's name.",
    )
    parser.add_argument("--data", type=Path, required=True, help="JSONL dataset (one sample per line)")
    parser.add_argument("--base", type=Path, required=True, help="base model directory (as vLLM serves it)")
    parser.add_argument("--out", type=Path, required=True, help="adapter directory to write, e.g. adapters/NAME")
    parser.add_argument("--base-name", help="base_model_name_or_path to record: vLLM's --model value "
                        "(default: the base directory's absolute path)")
    parser.add_argument("--served-name", help="served name of the base model, for the manifest "
                        "(default: the gateway's VCHAT_SERVED_MODEL_NAME)")
    lora = parser.add_argument_group("LoRA")
    ranks = "/".join(map(str, ALLOWED_LORA_RANKS))
    lora.add_argument("--rank", type=_rank, default=8, help=f"LoRA rank r, one vLLM accepts: {ranks}")
    lora.add_argument("--alpha", type=_positive_int, default=16, help="LoRA alpha")
    lora.add_argument("--dropout", type=_dropout, default=0.05, help="LoRA dropout")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--lr", type=_positive_float, default=2e-4, help="AdamW learning rate (constant)")
    opt.add_argument("--epochs", type=_positive_float, default=1.0, help="passes over the dataset")
    opt.add_argument("--batch-size", type=_positive_int, default=1, help="samples per micro-batch")
    opt.add_argument("--grad-accum", type=_positive_int, default=1, help="micro-batches per optimizer step")
    opt.add_argument("--seed", type=int, default=0, help="seed for LoRA init, data order and dropout")
    opt.add_argument("--max-steps", type=_positive_int, help="optimizer steps in total (overrides --epochs)")
    media = parser.add_argument_group("frames (defaults: the gateway's settings, so training sees what it serves)")
    media.add_argument("--frames", type=_positive_int, help="most frames per video (the gateway's vchat.max_frames)")
    media.add_argument("--fps", type=_positive_float, help="frames per second sampled (the gateway's vchat.fps)")
    media.add_argument("--prompt-format", choices=["r15", "raw"], default="r15",
                       help="r15: wrap each user turn in the gateway's final-round prompt; raw: use it as written")
    ckpt = parser.add_argument_group("checkpoints")
    ckpt.add_argument("--checkpoint-every", type=int, default=0, help="save a checkpoint every N steps (0: only at "
                      "the end)")
    ckpt.add_argument("--checkpoint-dir", type=Path, help="default: .NAME.checkpoints beside --out")
    ckpt.add_argument("--keep-checkpoints", type=_positive_int, default=2, help="checkpoints kept (newest)")
    ckpt.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    ckpt.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--load-in-4bit", action="store_true", help="quantise the base to 4 bits (CUDA + bitsandbytes)")
    hw.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory (GPU)")
    hw.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The TrainConfig for argv; argparse exits with code 2 on a bad argument (e.g. a rank vLLM refuses)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.checkpoint_every < 0:
        parser.error("--checkpoint-every must not be negative")
    return TrainConfig(
        data=args.data, base=args.base, out=args.out, base_name=args.base_name, served_name=args.served_name,
        rank=args.rank, alpha=args.alpha, dropout=args.dropout, lr=args.lr, epochs=args.epochs,
        batch_size=args.batch_size, grad_accum=args.grad_accum, seed=args.seed, max_steps=args.max_steps,
        frames=args.frames, fps=args.fps, prompt_format=args.prompt_format, checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.checkpoint_dir, keep_checkpoints=args.keep_checkpoints, resume=args.resume,
        overwrite=args.overwrite, load_in_4bit=args.load_in_4bit, gradient_checkpointing=args.gradient_checkpointing,
        progress=args.progress,
    )
