"""The tiny VideoChat-R1.5-shaped model builds reproducibly and its tokenizer handles R1.5 replies."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = Path(os.environ.get("VCHAT_VLLM_VENV", REPO_ROOT / ".venv-vllm"))
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
R15_REPLY = "<think>the dog runs</think><answer>A</answer><glue>[(1.0, 2.5)]</glue>"
EXPECTED_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
]



@pytest.fixture(autouse=True, scope="module")
def _model_venv_installed() -> None:
    # `make test` installs it first; its absence is a broken setup, never a reason to skip.
    assert (VLLM_VENV / ".vchat-installed").exists(), f"run vllm_launch/install_cpu.sh: {VLLM_VENV} is missing"


def _build(out_dir: Path, seed: int = 0) -> str:
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-m", "testmodel.tiny_model", str(out_dir), "--seed", str(seed)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out_dir = tmp_path_factory.mktemp("tiny") / "model"
    return out_dir, _build(out_dir)


def test_build_writes_a_small_model(built: tuple[Path, str]) -> None:
    out_dir, stdout = built
    for name in EXPECTED_FILES:
        assert (out_dir / name).is_file(), f"missing {name}"
    assert list(out_dir.glob("*processor_config.json")), "no processor config written"
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    assert total < 10 * 1024 * 1024
    assert str(out_dir.resolve()) in stdout
    assert "parameters:" in stdout


def test_same_seed_gives_identical_weights(built: tuple[Path, str], tmp_path: Path) -> None:
    out_dir, _ = built
    again = tmp_path / "again"
    _build(again, seed=0)
    assert (again / "model.safetensors").read_bytes() == (out_dir / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_bytes() == (out_dir / "tokenizer.json").read_bytes()


def test_config_token_ids_match_the_tokenizer(built: tuple[Path, str]) -> None:
    out_dir, _ = built
    config = json.loads((out_dir / "config.json").read_text())
    tokenizer = json.loads((out_dir / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert config["image_token_id"] == added["<|image_pad|>"]
    assert config["video_token_id"] == added["<|video_pad|>"]
    assert config["vision_start_token_id"] == added["<|vision_start|>"]
    assert config["vision_end_token_id"] == added["<|vision_end|>"]
    generation = json.loads((out_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [added["<|im_end|>"], added["<|endoftext|>"]]


def test_tokenizer_round_trips_an_r15_reply(built: tuple[Path, str]) -> None:
    out_dir, _ = built
    tokenizer_json = out_dir / "tokenizer.json"
    try:
        from tokenizers import Tokenizer
    except ImportError:  # the gateway's venv has no tokenizers: use the model-building venv
        script = (
            "import sys; from tokenizers import Tokenizer; t = Tokenizer.from_file(sys.argv[1]); "
            "ids = t.encode(sys.argv[2]).ids; print(len(ids)); print(t.decode(ids, skip_special_tokens=True))"
        )
        proc = subprocess.run(
            [str(VLLM_PYTHON), "-c", script, str(tokenizer_json), R15_REPLY],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        n_ids, decoded = proc.stdout.rstrip("\n").split("\n", 1)
    else:
        tok = Tokenizer.from_file(str(tokenizer_json))
        ids = tok.encode(R15_REPLY).ids
        n_ids, decoded = str(len(ids)), tok.decode(ids, skip_special_tokens=True)
    assert decoded == R15_REPLY
    assert int(n_ids) < len(R15_REPLY) // 2  # merges and whole-tag tokens, not one token per byte
