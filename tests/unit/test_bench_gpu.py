"""The GPU benchmark's report (bench/gpu/__main__.py): what a run brought back becomes the results JSON and the
bench/README.md table, with what was not measured said as such, never a blank figure."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gpu.__main__ import END, START, merge_gateway, report, table

RUN = {
    "config": {"max_tokens_per_round": 256},
    "loop_3r": {"gateway_p50_s": 7.071, "direct_p50_s": 7.058},
    "cold_3r": {"p50_s": 8.641}, "warm_3r": {"p50_s": 7.174},
    "stream_3r": {"first_chunk_p50_s": 0.011, "first_reasoning_p50_s": 0.011},
    "round_64f": {"gateway_p50_s": 1.9, "direct_p50_s": 1.85, "frames_sent": 64, "frame_size": [420, 224],
                  "visual_tokens": 3840},
    "ratios": {"loop_3r_gateway_over_direct": 1.002, "cold_over_warm_3r": 1.204,
               "round_64f_gateway_over_direct": 1.027},
    "skipped": ["conc32_3r"],
}


def test_the_table_has_the_measured_figures_and_names_the_rest() -> None:
    text = table({"gateway": RUN, "hf": None})
    assert "| 3 rounds, warm, p50 | 7.07 s | 7.06 s | 1 | ≤ 1.02 |" in text
    assert "| one round, max_frames 64 (64 frames 420x224, 3840 visual tokens), p50 | 1.9 s | 1.85 s | 1.03 |" in text
    assert "1.2 | ≤ 1.1 |" in text  # cold over warm, against its target
    measured_rows = [line for line in text.splitlines() if line.startswith("| ") and "—" not in line.split("|")[2]]
    assert all("max_frames 16" not in line for line in measured_rows)
    missing = text.split("Not measured in this run: ")[1]
    for figure in ("one round, max_frames 16", "32 concurrent 3-round questions", "HF transformers `generate`"):
        assert figure in missing


def test_report_writes_the_json_and_replaces_only_its_block(tmp_path: Path) -> None:
    came_back = tmp_path / "back"
    came_back.mkdir()
    (came_back / "bench_gateway.json").write_text(json.dumps(RUN))
    (came_back / "env.txt").write_text("NVIDIA H200, 143771 MiB\nvllm 0.26.0 transformers 5.17.0\n")
    root = tmp_path / "repo"
    (root / "bench").mkdir(parents=True)
    (root / "bench/README.md").write_text(f"# bench\n\nbefore\n\n{START}\nold table\n{END}\n\nafter\n")
    assert report([came_back], root) == 0
    readme = (root / "bench/README.md").read_text()
    assert "old table" not in readme and readme.count(START) == 1
    assert readme.startswith("# bench\n\nbefore\n\n") and readme.endswith(f"{END}\n\nafter\n")
    assert "NVIDIA H200, 143771 MiB; vLLM 0.26.0; random weights of the real shape; 256 tokens a round" in readme
    [written] = (root / "bench/results").glob("gpu-*.json")
    result = json.loads(written.read_text())
    assert result["gateway"]["ratios"]["loop_3r_gateway_over_direct"] == 1.002
    assert result["weights"].startswith("random weights of the real shape")
    assert result["hf"] is None


def test_calls_that_ran_different_steps_merge_into_one_result() -> None:
    first = {**RUN, "step_seconds": {"cold": 25.0, "frames": 70.0}, "skipped": ["conc32_3r", "conc8_3r"]}
    later = {"config": RUN["config"], "conc32_3r": {"gateway": {"answers_per_s": 4.0}},
             "ratios": {"conc32_3r_throughput_gateway_over_direct": 0.99}, "step_seconds": {"conc32_3r": 60.0},
             "skipped": ["lora"]}
    merged = merge_gateway([first, later])
    assert merged["ratios"] == {**RUN["ratios"], "conc32_3r_throughput_gateway_over_direct": 0.99}
    assert merged["skipped"] == ["conc8_3r", "lora"]  # conc32_3r ran in the later call
    assert merged["cold_3r"] == RUN["cold_3r"] and merged["conc32_3r"]["gateway"]["answers_per_s"] == 4.0


def test_the_cold_answers_media_work_is_its_own_row() -> None:
    run = {**RUN, "cold_3r": {"p50_s": 8.6, "video_s_p50": 0.42, "frames_s_p50_by_round": [0.81, 0.05, 0.05]},
           "warm_3r": {"p50_s": 7.2, "frames_s_p50_by_round": [0.06, 0.05, 0.05]}}
    text = table({"gateway": run, "hf": None})
    assert "| 0.42 s + 0.81 s | 0.06 s cached |" in text
