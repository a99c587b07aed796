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


def test_a_follow_up_question_has_its_rows_and_is_named_when_not_measured() -> None:
    follow_up = {"frames": 120, "visual_tokens": 7200, "all_round1_parts_identical": True,
                 "first_round1_ttft_p50_s": 0.62, "second_round1_ttft_p50_s": 0.11,
                 "direct_round1_ttft_on_p50_s": 0.1, "direct_round1_ttft_off_p50_s": 0.6,
                 "first_answer_p50_s": 7.7, "second_answer_p50_s": 6.1, "direct_answer_on_p50_s": 5.9,
                 "direct_answer_off_p50_s": 6.9, "second_prefix_hit_rate_p50": 0.94}
    ratios = {"followup_60s_round1_ttft_second_over_first": 0.177,
              "followup_60s_round1_ttft_cached_over_uncached_direct": 0.167,
              "followup_60s_answer_second_over_first": 0.792, "followup_60s_answer_cached_over_uncached_direct": 0.855}
    run = {**RUN, "followup_60s": follow_up, "ratios": {**RUN["ratios"], **ratios}}
    text = table({"gateway": run, "hf": None})
    assert ("| follow-up question, 60 s 1080p clip (120 frames, 7200 visual tokens): round 1's time to first token, "
            "2nd question vs 1st") in text
    assert "| 0.11 s | 0.62 s 1st | 0.177 | ≤ 0.3 |" in text
    assert "round 1's video parts byte-identical), p50 | 0.1 s | 0.6 s off | 0.167 |" in text
    assert "| 6.1 s / 5.9 s | 7.7 s 1st / 6.9 s off | 0.792 / 0.855 | — |" in text
    assert "prefix-cache hit rate (hits / queried tokens, /metrics), p50 | 0.94 |" in text
    missing = text.split("Not measured in this run: ")[1]
    assert "follow-up question, 60-min video" in missing and "follow-up question, 60 s" not in missing


def test_a_concurrency_step_run_several_times_is_its_median_with_the_spread() -> None:
    calls = [{"config": RUN["config"], "conc32_3r": {"gateway": {"answers_per_s": a, "n_errors": 0},
                                                     "direct": {"answers_per_s": 2.0, "n_errors": 0}},
              "ratios": {"conc32_3r_throughput_gateway_over_direct": r}} for a, r in ((1.9, 0.95), (2.0, 0.99),
                                                                                       (1.96, 0.98))]
    merged = merge_gateway(calls)
    assert merged["ratios"]["conc32_3r_throughput_gateway_over_direct"] == 0.98
    assert "| 0.98 (median of 3: 0.95–0.99) | ≥ 0.98, 0 errors |" in table({"gateway": merged, "hf": None})


def test_a_figure_this_run_lacks_keeps_the_latest_earlier_one_with_its_date_and_card() -> None:
    older = {"date": "2026-12-01", "environment": ["NVIDIA A100, 40 GiB"],
             "gateway": {**RUN, "round_16f": {"gateway_p50_s": 9.0, "direct_p50_s": 9.9}}}
    latest = {"date": "2026-12-04", "environment": ["NVIDIA H200, 143771 MiB"],
              "gateway": {**RUN, "round_16f": {"gateway_p50_s": 1.42, "direct_p50_s": 1.41}}}
    text = table({"gateway": RUN, "hf": None}, [latest, older])
    assert "max_frames 16 (— frames ?, — visual tokens), p50 *(2026-12-04, NVIDIA H200)* | 1.42 s | 1.41 s |" in text
    assert "| 3 rounds, warm, p50 | 7.07 s |" in text  # measured now: no label
    assert "one round, max_frames 16" not in text.split("Not measured in this run: ")[1]


def test_the_hour_long_video_has_its_rows() -> None:
    rounds = [{"frames": 512, "visual_tokens": 30720, "seconds": 6.1, "frames_seconds": 2.2}]
    run = {**RUN, "long60": {"hour": {"wall_s": 21.5, "video_s": 3.7, "rounds": rounds},
                             "minute": {"wall_s": 7.2, "video_s": 0.2, "rounds": []}},
           "ratios": {**RUN["ratios"], "long60_hour_over_minute": 2.99}}
    text = table({"gateway": run, "hf": None})
    assert "the whole 3-round answer vs a 1-min video's | 21.5 s | 7.2 s 1 min | 2.99 | < 60 s |" in text
    assert "| 3.7 s + 2.2 s; 512×30720 tok 6.1 s |" in text
