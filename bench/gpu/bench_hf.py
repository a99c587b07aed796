"""On the GPU machine (device.sh, BENCH_STEP=hf, after vLLM is stopped): one perception round with HF transformers
`generate` (the seed's way) on the same 7B shape with random weights, the same frame count and size and 256 new
tokens, so the README can state vLLM's speed-up."""

import json
import os
import pathlib
import statistics
import time

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoProcessor, Qwen2_5_VLForConditionalGeneration

cfg = AutoConfig.from_pretrained("/tmp/up/m7")
proc = AutoProcessor.from_pretrained("/tmp/up/m7")
t = time.perf_counter()
torch.manual_seed(0)
with torch.device("cuda"):
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
model.eval()
print("init s", time.perf_counter() - t)
res = {}
# The frame sizes the gateway sent in bench_gateway.py's rounds (written there), else 420x224.
SIZES = pathlib.Path("/tmp/up/frame_sizes.json")
sizes = json.loads(SIZES.read_text()) if SIZES.exists() else {}
for n in (16, 64):
    w, h = sizes.get(str(n), [420, 224])
    rng = np.random.default_rng(n)
    frames = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(n)]
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "video"},
                {"type": "text", "text": "Answer the question. <think></think><answer></answer><glue></glue>"},
            ],
        }
    ]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    lat = []
    for _i in range(3):
        t = time.perf_counter()
        inp = proc(
            text=[text], videos=[frames], return_tensors="pt", videos_kwargs={"fps": 2.0, "do_sample_frames": False}
        ).to("cuda")
        with torch.no_grad():
            out = model.generate(**inp, max_new_tokens=256, min_new_tokens=256, do_sample=False)
        torch.cuda.synchronize()
        lat.append(time.perf_counter() - t)
    res[f"hf_round_{n}f"] = {
        "frame_size": [w, h],
        "p50_s": statistics.median(lat),
        "prompt_tokens": int(inp["input_ids"].shape[1]),
        "new_tokens": int(out.shape[1] - inp["input_ids"].shape[1]),
    }
    print(res)
pathlib.Path(os.environ.get("OUT", "."), "bench_hf.json").write_text(json.dumps(res, indent=1))
print(json.dumps(res, indent=1))
