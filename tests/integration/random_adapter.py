"""Writes a randomly initialised peft LoRA adapter for a model (run with the vLLM environment's Python).

    .venv-vllm/bin/python tests/integration/random_adapter.py MODEL_DIR OUT_DIR [SEED]
"""

import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText


def main() -> None:
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        lora_dropout=0.0, bias="none")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            # peft starts lora_B at zero (a no-op adapter); make it bite so outputs differ from the base.
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    peft_model.save_pretrained(out_dir)


if __name__ == "__main__":
    main()
