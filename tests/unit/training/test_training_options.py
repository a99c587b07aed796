"""The trainer's arguments, data order and export rules (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.options import parse_args
from training.order import step_batches, total_steps

REQUIRED = ["--data", "d.jsonl", "--base", "m", "--out", "adapters/x"]


def test_defaults_and_names() -> None:
    config = parse_args(REQUIRED)
    assert (config.rank, config.alpha, config.dropout, config.lr, config.batch_size, config.grad_accum) == (
        8, 16, 0.05, 2e-4, 1, 1)
    assert config.prompt_format == "r15" and config.frames is None and config.fps is None
    assert config.name == "x"
    assert config.checkpoints == Path("adapters/.x.checkpoints")


@pytest.mark.parametrize("rank", ["7", "0", "1024"])
def test_ranks_vllm_refuses_are_refused_at_parsing(rank: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([*REQUIRED, "--rank", rank])
    assert exited.value.code == 2
    assert "--rank" in capsys.readouterr().err


def test_data_order_is_seeded_and_covers_every_sample_each_epoch() -> None:
    batches = [step_batches(s, seed=3, samples=5, batch_size=1, grad_accum=1)[0][0] for s in range(10)]
    assert sorted(batches[:5]) == sorted(batches[5:]) == [0, 1, 2, 3, 4]
    assert batches == [step_batches(s, seed=3, samples=5, batch_size=1, grad_accum=1)[0][0] for s in range(10)]
    assert batches != [step_batches(s, seed=4, samples=5, batch_size=1, grad_accum=1)[0][0] for s in range(10)]
    assert [len(b) for b in step_batches(0, seed=0, samples=5, batch_size=2, grad_accum=3)] == [2, 2, 2]
    assert total_steps(samples=10, epochs=1.5, batch_size=2, grad_accum=2, max_steps=None) == 4
    assert total_steps(samples=10, epochs=1.5, batch_size=2, grad_accum=2, max_steps=7) == 7


def test_an_existing_output_or_missing_checkpoint_stops_before_any_work(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from training.finetune import main

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    out = tmp_path / "adapters" / "taken"
    out.mkdir(parents=True)
    args = ["--data", str(tmp_path / "absent.jsonl"), "--base", str(base), "--out", str(out)]
    assert main(args) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    assert main([*args[:2], "--base", str(tmp_path), "--out", str(tmp_path / "new")]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert main([*args[:4], "--out", str(tmp_path / "adapters" / "mine+gemini")]) == 2
    assert "the adapter name 'mine+gemini' must be" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["taken"]
