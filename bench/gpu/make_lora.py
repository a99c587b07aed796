"""On the GPU machine: a random rank-16 LoRA for the Qwen2.5-VL-7B shape (attention projections of all 28 layers),
the kind our training exports. bench_gateway.py hot-loads it through the gateway's /admin/adapters.
Usage: make_lora.py OUT_DIR BASE_MODEL_DIR"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

out, base = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rank, tensors = 16, {}
gen = torch.Generator().manual_seed(0)
shapes = {"q_proj": (3584, 3584), "k_proj": (3584, 512), "v_proj": (3584, 512), "o_proj": (3584, 3584)}
for layer in range(28):
    for name, (fan_in, fan_out) in shapes.items():
        prefix = f"base_model.model.model.language_model.layers.{layer}.self_attn.{name}"
        tensors[prefix + ".lora_A.weight"] = (torch.randn(rank, fan_in, generator=gen) * 0.01).to(torch.bfloat16)
        tensors[prefix + ".lora_B.weight"] = (torch.randn(fan_out, rank, generator=gen) * 0.01).to(torch.bfloat16)
save_file(tensors, os.path.join(out, "adapter_model.safetensors"))
with open(os.path.join(out, "adapter_config.json"), "w") as f:
    json.dump(
        {
            "peft_type": "LORA",
            "r": rank,
            "lora_alpha": 32,
            "target_modules": list(shapes),
            "bias": "none",
            "base_model_name_or_path": base,
            "lora_dropout": 0.0,
            "task_type": "CAUSAL_LM",
        },
        f,
    )
print("lora ok", out)
