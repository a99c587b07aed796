"""The trainer's entry point: validate the dataset, train LoRA on the gateway's frames, export the adapter.

    python -m training.finetune --data DATA.jsonl --base MODEL_DIR --out adapters/NAME [options]

Exit codes: 0 trained and exported; 2 bad arguments, dataset, checkpoint or hardware request (nothing trained,
nothing written); 1 anything else.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from adapters.validate import check_name
from training import __version__
from training.dataset import Dataset, DatasetInvalid, load_dataset
from training.frames import FrameSettings
from training.options import TrainConfig, parse_args
from vchat_settings import Settings

logger = logging.getLogger("training")


class UsageError(Exception):
    """Raised when the run cannot start as asked; the message tells the user what to change."""


def preflight(config: TrainConfig) -> None:
    """Cheap checks before the dataset's videos are decoded."""
    if (bad_name := check_name(config.name)) is not None:
        raise UsageError(f"--out {config.out}: {bad_name}")
    if not (config.base / "config.json").is_file():
        raise UsageError(f"--base {config.base}: not a model directory (no config.json)")
    if config.out.exists() and not (config.overwrite or config.resume):
        raise UsageError(f"--out {config.out} exists; pass --overwrite to replace it or --resume to continue")
    if config.resume:
        from training.checkpoint import all_checkpoints

        if not all_checkpoints(config.checkpoints):
            raise UsageError(f"--resume: no checkpoint in {config.checkpoints}")


def _warn_about(config: TrainConfig, dataset: Dataset) -> None:
    if config.prompt_format != "r15":
        return
    untagged = [s.line for s in dataset.samples
                if any(t.role == "assistant" and "<answer>" not in t.text for t in s.turns)]
    if untagged:
        logger.warning("lines %s: replies without <answer>…</answer>; the gateway shows only the answer part of "
                       "a reply, so these will look different when served", untagged[:10])


def train_and_export(config: TrainConfig, dataset: Dataset, settings: Settings) -> Path:
    """Load the base, add LoRA, train, export; returns the adapter directory."""
    import torch

    from training.collate import Encoder
    from training.export import export, manifest
    from training.model import add_lora, load_base, placement
    from training.train import train

    where = placement(config.load_in_4bit)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    encoder = Encoder(config.base)
    model = add_lora(load_base(config.base, where, config.gradient_checkpointing),
                     config.rank, config.alpha, config.dropout)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("base %s on %s (%s); LoRA r=%d alpha=%d: %s trainable parameters", config.base, where.device,
                where.dtype, config.rank, config.alpha, f"{trainable:,}")
    result = train(config, dataset, encoder, model, where)
    limits = FrameSettings.from_settings(settings, config.frames, config.fps).limits
    peft_config = model.peft_config["default"]
    training = {
        "lr": config.lr, "epochs": config.epochs, "max_steps": config.max_steps, "batch_size": config.batch_size,
        "grad_accum": config.grad_accum, "seed": config.seed, "dropout": config.dropout,
        "prompt_format": config.prompt_format, "frames": config.frames, "fps": config.fps,
        "max_frames_used": limits.max_frames, "fps_used": limits.target_fps, "device": where.device,
        "dtype": where.dtype, "load_in_4bit": where.load_in_4bit, "resumed_from_step": result.resumed_from,
        "seconds": round(result.seconds, 3), "samples_per_step": result.samples_per_step,
    }
    base_name = config.base_name or str(config.base.resolve())
    document = manifest(
        name=config.name, base_path=config.base.resolve(), base_name=base_name,
        served_name=config.served_name or settings.served_model_name,
        config={"r": peft_config.r, "lora_alpha": peft_config.lora_alpha,
                "target_modules": peft_config.target_modules},
        training=training, dataset_sha256=dataset.sha256, samples=len(dataset.samples), steps=result.steps,
        final_loss=result.final_loss, trainer_version=__version__)
    out = export(model, config.out, base_name=base_name, document=document)
    logger.info("trained %d steps (final loss %.4f) in %.1f s; wrote %s", result.steps, result.final_loss,
                result.seconds, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the trainer with argv (``vchat train …`` can call this); returns the exit code."""
    config = parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from training.checkpoint import CheckpointError
    from training.model import HardwareError

    try:
        preflight(config)
        settings = Settings()
        with tempfile.TemporaryDirectory(prefix="vchat-train-") as work:
            frames = FrameSettings.from_settings(settings, config.frames, config.fps)
            dataset = load_dataset(config.data, Path(work), frames)
            videos = len(dataset.frames)
            logger.info("dataset %s: %d samples, %d videos, sha256 %s", config.data, len(dataset.samples), videos,
                        dataset.sha256[:12])
            _warn_about(config, dataset)
            train_and_export(config, dataset, settings)
    except DatasetInvalid as exc:
        sys.stderr.write(exc.report() + "\n")
        return 2
    except (UsageError, CheckpointError, HardwareError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
