"""Loads the base model for training (float32 on CPU, bf16 or 4-bit on a GPU) and wraps it in peft LoRA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The language model's attention and MLP projections only. The vision tower has gate/up/down_proj too
# (model.visual.blocks.N.mlp), so plain module names would adapt it; vLLM ignores vision-tower LoRA weights.
TARGET_MODULES = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
TARGET_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class HardwareError(RuntimeError):
    """Raised when the requested precision or quantisation is impossible on this machine."""


@dataclass(frozen=True)
class Placement:
    """Where and in what precision the model trains."""

    device: str
    dtype: str  # "float32" | "bfloat16"
    load_in_4bit: bool


def placement(load_in_4bit: bool) -> Placement:
    """bf16 on a CUDA GPU, float32 on CPU; 4-bit only with a GPU and bitsandbytes (HardwareError otherwise)."""
    import importlib.util

    import torch

    gpu = torch.cuda.is_available()
    if load_in_4bit:
        if not gpu:
            raise HardwareError("--load-in-4bit needs a CUDA GPU, and none is available; train without it on CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise HardwareError("--load-in-4bit needs the bitsandbytes package; pip install bitsandbytes")
    return Placement("cuda" if gpu else "cpu", "bfloat16" if gpu else "float32", load_in_4bit)


def load_base(base: Path, where: Placement, gradient_checkpointing: bool) -> Any:
    """The base Qwen2.5-VL model, frozen, on its device."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    dtype = getattr(torch, where.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if where.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0}
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, **kwargs)
    if where.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    else:
        model.to(where.device)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    model.config.use_cache = False
    return model


def lora_config(rank: int, alpha: int, dropout: float) -> Any:
    """Plain LoRA (no DoRA, no bias, nothing saved whole) on the language model's projections."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=TARGET_MODULES,
                      bias="none", use_dora=False, modules_to_save=None, init_lora_weights=True)


def add_lora(model: Any, rank: int, alpha: int, dropout: float) -> Any:
    """The peft model; refuses a base whose adapted modules are not exactly the language-model projections."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(rank, alpha, dropout))
    adapted = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    if not adapted:
        raise ValueError("no language-model projection matched the LoRA targets: is this a Qwen2.5-VL model?")
    stray = [name for name in adapted if "visual" in name or name.rsplit(".", 1)[-1] not in TARGET_NAMES]
    if stray:
        raise ValueError(f"LoRA would adapt modules outside the language model: {stray[:3]}")
    return peft_model

