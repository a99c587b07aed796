"""`python -m bench.gpu prepare | plan | report DIR` (see bench/gpu/README.md).

prepare  builds the payload in .gpu/ (bench/gpu/prepare.sh): ≤ 54 MiB parts and their sha256 manifest.
plan     prints the commands that carry the parts and run the benchmark on the GPU machine, one per call.
report   reads what came back (bench_gateway.json, env.txt, vllm_args.json, bench_hf.json; one folder per call,
         in the order they ran: later steps replace earlier, a concurrency step run several times is reported as the
         median of its runs with their spread), writes bench/results/gpu-DATE.json and the table in bench/README.md
         between its gpu-table markers; a figure this run did not measure keeps the latest earlier result's
         (bench/results/gpu-*.json), labelled with its date and card.
"""

from __future__ import annotations

import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PARTS = ROOT / ".gpu"
START, END = "<!-- gpu-table:start -->", "<!-- gpu-table:end -->"


def prepare() -> int:
    return subprocess.call(["bash", str(ROOT / "bench/gpu/prepare.sh")], cwd=ROOT)


def plan() -> int:
    parts = sorted(json.loads((PARTS / "manifest.json").read_text()))
    for part in parts[:-1]:
        print(f"carry [.gpu/{part}, .gpu/manifest.json]:  "
              f"mkdir -p /tmp/up && cp .gpu/{part} .gpu/manifest.json /tmp/up/")
    last = parts[-1]
    print(f"carry [.gpu/{last}, .gpu/manifest.json]:  mkdir -p /tmp/up && cp .gpu/{last} .gpu/manifest.json /tmp/up/ "
          "&& BENCH_BUDGET_S=560 bash bench/gpu/device.sh")
    print("then, on the same machine:  BENCH_STEP=hf BENCH_BUDGET_S=300 bash bench/gpu/device.sh")
    print("follow-up questions (vLLM's caches on, a fresh machine): the last part's call with "
          "BENCH_CACHES=on BENCH_ONLY=\"warmup followup\" before bash, then "
          "BENCH_STEP=gateway BENCH_ONLY=\"followup60m\" BENCH_BUDGET_S=560 bash bench/gpu/device.sh")
    return 0


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}{unit}" if abs(value) < 10 else f"{value:.1f}{unit}"
    return f"{value}{unit}"


def table(result: dict[str, Any], earlier: list[dict[str, Any]] | None = None) -> str:
    """The bench/README.md table: one row per figure, gateway and direct side by side, the ratio, the target. A figure
    this run lacks comes from the latest of ``earlier`` results that has it, labelled with that run's date and card."""
    rows = _rows(result)
    older = [(_rows(e), _label(e)) for e in earlier or []]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    missing = []
    for i, row in enumerate(rows[1:], start=1):
        if _measured(row):
            lines.append("| " + " | ".join(row) + " |")
            continue
        kept = next(((rs[i], label) for rs, label in older if _measured(rs[i])), None)
        if kept is None:
            missing.append(row[0].split(" (")[0])
        else:
            lines.append("| " + " | ".join((f"{kept[0][0]} *({kept[1]})*", *kept[0][1:])) + " |")
    if missing:
        lines += ["", "Not measured in this run: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def _measured(row: tuple[str, ...]) -> bool:
    return any(ch.isdigit() for ch in row[1] + row[2])


def _label(result: dict[str, Any]) -> str:
    card = (result.get("environment") or ["?"])[0].split(",")[0]
    return f"{result.get('date', '?')}, {card}"


def _rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    gw, hf, ratios = result["gateway"], result.get("hf") or {}, result["gateway"].get("ratios", {})
    spread = result["gateway"].get("ratio_runs", {})
    rows = [("figure", "gateway", "direct vLLM / reference", "ratio", "target")]
    for n in (16, 64, 128):
        r = gw.get(f"round_{n}f") or {}
        size = "x".join(map(str, r["frame_size"])) if r.get("frame_size") else "?"
        rows.append((f"one round, max_frames {n} ({_fmt(r.get('frames_sent'))} frames {size}, "
                     f"{_fmt(r.get('visual_tokens'))} visual tokens), p50",
                     _fmt(r.get("gateway_p50_s"), " s"), _fmt(r.get("direct_p50_s"), " s"),
                     _fmt(ratios.get(f"round_{n}f_gateway_over_direct")), "≤ 1.02"))
    rows.append(("3 rounds, warm, p50", _fmt(_get(gw, "loop_3r", "gateway_p50_s"), " s"),
                 _fmt(_get(gw, "loop_3r", "direct_p50_s"), " s"), _fmt(ratios.get("loop_3r_gateway_over_direct")),
                 "≤ 1.02"))
    rows.append(("3-round answer, cold (new video) vs warm (cached), p50", _fmt(_get(gw, "cold_3r", "p50_s"), " s"),
                 _fmt(_get(gw, "warm_3r", "p50_s"), " s") + " warm", _fmt(ratios.get("cold_over_warm_3r")),
                 "≤ 1.1"))
    cold = gw.get("cold_3r") or {}
    if cold.get("video_s_p50") is not None:
        frames = cold.get("frames_s_p50_by_round") or [None]
        warm_frames = (_get(gw, "warm_3r", "frames_s_p50_by_round") or [None])[0]
        rows.append(("cold answer's media work: getting the video (fetch, sanitize) + round 1's frames (index, "
                     "extraction) vs round 1's frames when cached, p50",
                     f"{_fmt(cold.get('video_s_p50'), ' s')} + {_fmt(frames[0], ' s')}",
                     _fmt(warm_frames, " s") + " cached", "—", "—"))
    rows.append(("first streamed byte / first reasoning text, cached video, p50",
                 _fmt(_get(gw, "stream_3r", "first_chunk_p50_s"), " s"),
                 _fmt(_get(gw, "stream_3r", "first_reasoning_p50_s"), " s"), "—", "≤ 0.3 s"))
    for n in (32, 8):
        c = gw.get(f"conc{n}_3r") or {}
        key = f"conc{n}_3r_throughput_gateway_over_direct"
        runs = spread.get(key) or []
        ratio = _fmt(ratios.get(key))
        if len(runs) > 1:
            ratio += f" (median of {len(runs)}: {_fmt(min(runs))}–{_fmt(max(runs))})"
        rows.append((f"{n} concurrent 3-round questions: answers/s (errors)",
                     f"{_fmt(_get(c, 'gateway', 'answers_per_s'))} ({_fmt(_get(c, 'gateway', 'n_errors'))})",
                     f"{_fmt(_get(c, 'direct', 'answers_per_s'))} ({_fmt(_get(c, 'direct', 'n_errors'))})",
                     ratio, "≥ 0.98, 0 errors"))
    for key, video in (("followup_60s", "60 s 1080p clip"), ("followup_60m", "60-min video")):
        rows += _follow_up_rows(gw.get(key) or {}, ratios, key, video)
    rows += _long_video_rows(gw.get("long60") or {}, ratios)
    lora = gw.get("lora_1r") or {}
    rows.append(("a round by a rank-16 LoRA's name (hot-loaded by /admin/adapters), p50",
                 _fmt(lora.get("gateway_p50_s"), " s"), _fmt(lora.get("direct_p50_s"), " s"),
                 _fmt(ratios.get("lora_1r_gateway_over_direct")), "≤ 1.02"))
    rows.append(("LoRA round vs the base model's, both direct", _fmt(lora.get("direct_p50_s"), " s"),
                 _fmt(lora.get("direct_base_model_p50_s"), " s"), _fmt(ratios.get("lora_over_base_direct")), "—"))
    for n in (16, 64):
        h = hf.get(f"hf_round_{n}f") or {}
        v = gw.get(f"round_{n}f") or {}
        speed = round(h["p50_s"] / v["direct_p50_s"], 2) if h.get("p50_s") and v.get("direct_p50_s") else None
        rows.append((f"HF transformers `generate`, {n} frames, 256 tokens (the seed's way) vs vLLM",
                     _fmt(h.get("p50_s"), " s"), _fmt(v.get("direct_p50_s"), " s"),
                     f"{_fmt(speed)}× faster" if speed else "—", "—"))
    return rows


def _long_video_rows(f: dict[str, Any], ratios: dict[str, Any]) -> list[tuple[str, ...]]:
    """A cold question about a 60-min 720p video at the gateway's defaults (openai SDK), beside a 1-min one."""
    hour, minute = f.get("hour") or {}, f.get("minute") or {}

    def split(run: dict[str, Any]) -> str:
        return ", ".join(f"{r.get('frames')}×{r.get('visual_tokens')} tok {_fmt(r.get('seconds'), ' s')}"
                         for r in run.get("rounds") or [])

    return [
        ("hour-long video (60 min 720p, 2 s GOP), cold, default settings: the whole 3-round answer vs a 1-min video's",
         _fmt(hour.get("wall_s"), " s"), _fmt(minute.get("wall_s"), " s") + " 1 min",
         _fmt(ratios.get("long60_hour_over_minute")), "< 60 s"),
        ("hour-long video: getting it (fetch, sanitize) + round 1's frames; each round's frames × visual tokens and "
         "vLLM call",
         f"{_fmt(hour.get('video_s'), ' s')} + {_fmt(((hour.get('rounds') or [{}])[0]).get('frames_seconds'), ' s')}"
         + (f"; {split(hour)}" if hour.get("rounds") else ""),
         f"{_fmt(minute.get('video_s'), ' s')} + "
         f"{_fmt(((minute.get('rounds') or [{}])[0]).get('frames_seconds'), ' s')}"
         + (f"; {split(minute)}" if minute.get("rounds") else "") + " 1 min", "—", "—"),
    ]


def _follow_up_rows(f: dict[str, Any], ratios: dict[str, Any], key: str, video: str) -> list[tuple[str, ...]]:
    """A second, different question about a video vs the first (caches on, as in production), and the same round
    straight to vLLM with its caches on vs defeated, in the same run."""
    shape = f"{_fmt(f.get('frames'))} frames, {_fmt(f.get('visual_tokens'))} visual tokens"
    identical = {True: "byte-identical", False: "NOT identical", None: "—"}[f.get("all_round1_parts_identical")]
    return [
        (f"follow-up question, {video} ({shape}): round 1's time to first token, 2nd question vs 1st "
         "(gateway, streamed: from its call to vLLM to the first token), p50",
         _fmt(f.get("second_round1_ttft_p50_s"), " s"), _fmt(f.get("first_round1_ttft_p50_s"), " s") + " 1st",
         _fmt(ratios.get(f"{key}_round1_ttft_second_over_first")), "≤ 0.3"),
        (f"follow-up question, {video}: round 1's time to first token, vLLM's caches on vs off (direct, same "
         f"round, same run; round 1's video parts {identical}), p50",
         _fmt(f.get("direct_round1_ttft_on_p50_s"), " s"), _fmt(f.get("direct_round1_ttft_off_p50_s"), " s") + " off",
         _fmt(ratios.get(f"{key}_round1_ttft_cached_over_uncached_direct")), "≤ 0.3"),
        (f"follow-up question, {video}: whole 3-round answer, 2nd vs 1st (gateway; 1st on a new video) and caches "
         "on vs off (direct), p50",
         f"{_fmt(f.get('second_answer_p50_s'), ' s')} / {_fmt(f.get('direct_answer_on_p50_s'), ' s')}",
         f"{_fmt(f.get('first_answer_p50_s'), ' s')} 1st / {_fmt(f.get('direct_answer_off_p50_s'), ' s')} off",
         f"{_fmt(ratios.get(f'{key}_answer_second_over_first'))} / "
         f"{_fmt(ratios.get(f'{key}_answer_cached_over_uncached_direct'))}", "—"),
        (f"follow-up question, {video}: vLLM's prefix-cache hit rate (hits / queried tokens, /metrics), p50",
         _fmt(f.get("second_prefix_hit_rate_p50")), "—", "—", "—"),
    ]


def merge_gateway(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """bench_gateway.json of several calls on one machine (one vLLM, one gateway) as one: a later call's steps
    replace an earlier one's, ratios are joined, and a step is skipped only if no call ran it."""
    merged: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    skipped: list[str] = []
    steps: dict[str, Any] = {}
    runs: dict[str, list[float]] = {}
    for part in parts:
        merged |= {k: v for k, v in part.items() if k not in ("ratios", "skipped", "step_seconds", "ratio_runs")}
        ratios |= part.get("ratios", {})
        steps |= part.get("step_seconds", {})
        skipped += [name for name in part.get("skipped", []) if name not in skipped]
        for key, value in part.get("ratios", {}).items():
            if key.startswith("conc") and isinstance(value, int | float):
                runs.setdefault(key, []).append(value)
    # A concurrency step run in several calls is one noisy figure each time: its median, with every run kept.
    for key, values in runs.items():
        ratios[key] = round(statistics.median(values), 3)
    merged["ratios"], merged["step_seconds"] = ratios, steps
    merged["ratio_runs"] = {key: values for key, values in runs.items() if len(values) > 1}
    merged["skipped"] = [name for name in skipped if name not in steps]
    return merged


def report(folders: list[Path], root: Path = ROOT) -> int:
    """The results of one or more calls' folders (in the order they ran) as bench/results/gpu-DATE.json + table."""
    gateway = merge_gateway([json.loads((f / "bench_gateway.json").read_text()) for f in folders
                             if (f / "bench_gateway.json").exists()])
    hf_path = next((f / "bench_hf.json" for f in reversed(folders) if (f / "bench_hf.json").exists()), None)
    env_path = next((f / "env.txt" for f in folders if (f / "env.txt").exists()), None)
    args_path = next((f / "vllm_args.json" for f in folders if (f / "vllm_args.json").exists()), None)
    env = env_path.read_text() if env_path else ""
    args = args_path.read_text() if args_path else ""
    date = datetime.date.today().isoformat()
    result = {
        "date": date,
        "weights": "random weights of the real shape (Qwen2.5-VL-7B, --load-format dummy)",
        "environment": env.strip().splitlines(),
        "vllm_args": args.strip(),
        "gateway": gateway,
        "hf": json.loads(hf_path.read_text()) if hf_path else None,
    }
    out = root / "bench/results" / f"gpu-{date}.json"
    out.parent.mkdir(exist_ok=True)
    earlier = sorted((p for p in out.parent.glob("gpu-*.json") if p.name < out.name), reverse=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    readme = root / "bench/README.md"
    text = readme.read_text()
    head = (f"Measured {date} on {(env.splitlines() or ['?'])[0]}; {_vllm_line(env)}; "
            f"random weights of the real shape; {gateway['config']['max_tokens_per_round']} tokens a round; "
            f"raw figures in `bench/results/{out.name}`. A row labelled with another date was not measured in this "
            f"run and keeps that run's figure.\n\n")
    block = START + "\n" + head + table(result, [json.loads(p.read_text()) for p in earlier]) + END
    text = text[: text.index(START)] + block + text[text.index(END) + len(END):] if START in text else \
        text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)
    print(f"wrote {out.relative_to(root)} and the table in bench/README.md")
    return 0


def _vllm_line(env: str) -> str:
    for line in env.splitlines():
        if line.startswith("vllm "):
            return " ".join(line.split()[:2]).replace("vllm", "vLLM")
    return "vLLM ?"


def main(argv: list[str]) -> int:
    if argv[:1] == ["prepare"]:
        return prepare()
    if argv[:1] == ["plan"]:
        return plan()
    if argv[:1] == ["report"] and len(argv) >= 2:
        return report([Path(a) for a in argv[1:]])
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
