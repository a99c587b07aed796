"""The taught tiny model answers gateway rounds with R1.5's exact reply shape (checked with HF, without vLLM)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from tests.support.clips import make_clip

REPO_ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = Path(os.environ.get("VCHAT_VLLM_VENV", REPO_ROOT / ".venv-vllm"))
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
GLUE_REPLY = "<think>The bars move.</think><answer>B</answer><glue>[(1.0, 2.5)]</glue>"
FINAL_REPLY = "<think>The bars move.</think><answer>B</answer>"

# Runs in the vLLM environment: 12 JPEG frames (224x168, 2 fps) of the clip, one intermediate and one final
# round. Greedy decoding uses vLLM's M-RoPE positions (videochat_r15.decoding): transformers' own generate() places the
# text after the video at another position than vLLM does, so it would not check what vLLM serves.
CHECK = """
import json, sys
from pathlib import Path
import numpy as np, torch
from transformers import Qwen2_5_VLForConditionalGeneration
from testmodel.frames import extract_frames
from videochat_r15.prompts import round_prompt
from videochat_r15.decoding import greedy
from videochat_r15.inputs import Encoder, Round, decode_jpeg

model_dir, clip = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(2)
frames = np.stack([decode_jpeg(j) for j in extract_frames(clip, 224, 168, 2.0)])
encoder = Encoder(model_dir)
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
options = ["A. Nothing.", "B. The bars.", "C. A dog."]
glue = Round(frames, 2.0, round_prompt("What moves in the video?", options, glue=True), "")
final = Round(frames, 2.0, round_prompt("Describe the video.", None, glue=False), "")
print(json.dumps({"frames": len(frames), "glue": greedy(model, encoder, glue)[0],
                  "final": greedy(model, encoder, final)[0]}))
"""


@pytest.fixture(autouse=True, scope="module")
def _model_venv_installed() -> None:
    # `make test` installs it first; its absence is a broken setup, never a reason to skip.
    assert (VLLM_VENV / ".vchat-installed").exists(), f"run vllm_launch/install_cpu.sh: {VLLM_VENV} is missing"


def _safetensors_dtypes(path: Path) -> set[str]:
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {t["dtype"] for name, t in header.items() if name != "__metadata__"}


def test_taught_model_keeps_the_tiny_models_shape(taught_model: Path, tiny_model: Path) -> None:
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "processor_config.json", "chat_template.jinja"):
        assert (taught_model / name).is_file(), f"missing {name}"
    for name in ("tokenizer.json", "processor_config.json", "chat_template.jinja", "generation_config.json"):
        assert (taught_model / name).read_bytes() == (tiny_model / name).read_bytes(), name
    config = json.loads((taught_model / "config.json").read_text())
    assert config == json.loads((tiny_model / "config.json").read_text())
    assert _safetensors_dtypes(taught_model / "model.safetensors") == {"BF16"}
    assert (taught_model / "model.safetensors").read_bytes() != (tiny_model / "model.safetensors").read_bytes()


def test_greedy_replies_are_exact(taught_model: Path) -> None:
    clip = make_clip()  # the 6 s 320x240 test pattern
    proc = subprocess.run([str(VLLM_PYTHON), "-c", CHECK, str(taught_model), str(clip)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 12
    assert result["glue"] == GLUE_REPLY
    assert result["final"] == FINAL_REPLY
