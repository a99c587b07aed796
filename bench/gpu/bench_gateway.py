"""On the GPU machine (device.sh starts it): the project's gateway end to end vs the same requests sent straight to
vLLM, through the openai SDK. Needs vLLM on VLLM_URL, the gateway started by gw_launch.py (GW_URL, capture hook on
BENCH_CAPTURE_DIR) and the clips on a loopback HTTP server (VIDEO_BASE). Writes $OUT/bench_gateway.json after every
step; a step that would run past BENCH_DEADLINE (epoch seconds) is skipped, the most important ones come first.

Direct requests replay the exact bodies the gateway sent (same frames, size, prompt and sampling), streamed with
usage at the end, as the gateway calls vLLM. Arguments: step names to run only those (plus the ones they need)."""

import copy
import glob
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
import uuid

from openai import OpenAI

GW = os.environ.get("GW_URL", "http://127.0.0.1:8000")
VL = os.environ.get("VLLM_URL", "http://127.0.0.1:8001")
BASE = os.environ.get("VIDEO_BASE", "http://127.0.0.1:8090")
VIDEO = f"{BASE}/clip1080.mp4"
CAP = os.environ["BENCH_CAPTURE_DIR"]
MODEL = os.environ.get("BENCH_MODEL", "videochat-r1.5")
ADAPTER = "adapter-r16"
ADMIN_KEY = os.environ.get("VCHAT_ADMIN_KEY", "bench-admin")
MAXTOK = int(os.environ.get("BENCH_MAX_TOKENS", "256"))
DEADLINE = float(os.environ.get("BENCH_DEADLINE", time.time() + 3600))
OUT = os.path.join(os.environ.get("OUT", "."), "bench_gateway.json")
Q = (
    "What moves across the test pattern, and when does it move?\n"
    "A. a coloured bar\nB. a white circle\nC. a frame counter\nD. nothing moves"
)

# A second, different question about the same video (the follow-up steps), and the texts of vLLM-only replays.
FOLLOW_UP = "Which colour is the leftmost bar at the end of the clip, and does it ever change?"
WWW = os.environ.get("BENCH_WWW", "/tmp/www")

gw = OpenAI(base_url=f"{GW}/v1", api_key="unused", timeout=900, max_retries=0)
vl = OpenAI(base_url=f"{VL}/v1", api_key="unused", timeout=900, max_retries=0)
res: dict = {"config": {"max_tokens_per_round": MAXTOK, "video": "60 s 1920x1080 30 fps H.264 + AAC", "model": MODEL}}
CAPTURED: dict = {}


def save() -> None:
    with open(OUT, "w") as f:
        json.dump(res, f, indent=1)


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def p50(xs):
    return round(statistics.median(xs), 3) if xs else None


def vchat(iters: int, frames: int | None) -> dict:
    knobs: dict = {"iterations": iters}
    if frames:
        knobs["max_frames"] = frames
    return {"vchat": knobs}


def ask(iters: int, *, frames: int | None = None, model: str = MODEL, question: str = Q, video: str = VIDEO) -> dict:
    """One non-streamed question through the gateway: wall time and the perception record."""
    t = time.perf_counter()
    r = gw.chat.completions.create(
        model=model,
        temperature=0,
        max_tokens=MAXTOK,
        messages=[
            {
                "role": "user",
                "content": [{"type": "video_url", "video_url": {"url": video}}, {"type": "text", "text": question}],
            }
        ],
        extra_body=vchat(iters, frames),
    )
    wall = time.perf_counter() - t
    p = (r.model_extra or {}).get("perception") or {}
    rounds = [
        {
            k: x.get(k)
            for k in (
                "round",
                "frames",
                "frame_size",
                "visual_tokens",
                "sample_fps",
                "seconds",
                "frames_seconds",
                "usage",
                "finish_reason",
            )
        }
        for x in p.get("rounds", [])
    ]
    return {
        "wall_s": round(wall, 3),
        "rounds": rounds,
        "round_s_sum": round(sum(x["seconds"] or 0 for x in rounds), 3),
        "video_s": p.get("video_seconds"),
        "frames_s_sum": round(sum(x["frames_seconds"] or 0 for x in rounds), 3),
        "usage": r.usage.model_dump() if r.usage else None,
        "warnings": p.get("warnings"),
    }


def ask_stream(iters: int) -> dict:
    """One streamed question: time to the first byte, the first reasoning text and the first answer text."""
    t = time.perf_counter()
    first_any = first_reasoning = first_content = None
    first_text = None
    stream = open_stream(iters, Q, VIDEO)
    for chunk in stream:
        now = time.perf_counter() - t
        first_any = first_any if first_any is not None else now
        for c in chunk.choices:
            reasoning = (c.delta.model_extra or {}).get("reasoning_content")
            if reasoning and first_reasoning is None:
                first_reasoning, first_text = now, reasoning[:120]
            if c.delta.content and first_content is None:
                first_content = now
    return {
        "first_chunk_s": round(first_any or 0, 3),
        "first_reasoning_s": round(first_reasoning or 0, 3),
        "first_reasoning_text": first_text,
        "first_content_s": round(first_content or 0, 3),
        "wall_s": round(time.perf_counter() - t, 3),
    }


def open_stream(iters: int, question: str, video: str):
    """A streamed question about video through the gateway (openai SDK), greedy, MAXTOK tokens a round."""
    return gw.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=MAXTOK,
        stream=True,
        messages=[
            {
                "role": "user",
                "content": [{"type": "video_url", "video_url": {"url": video}}, {"type": "text", "text": question}],
            }
        ],
        extra_body=vchat(iters, None),
    )


def ask_streamed(iters: int, *, question: str = Q, video: str = VIDEO) -> dict:
    """One streamed question: time to the model's first token (round 1's, as a chat UI shows it), round 1's time to
    first token (from the gateway's "Round 1/N: …" line, sent as it calls vLLM, to the first text after it), the whole
    answer, and the media work before round 1 (the video, round 1's frames) from the last chunk's perception record."""
    t = time.perf_counter()
    first = round1 = None
    perception: dict = {}
    stream = open_stream(iters, question, video)
    for chunk in stream:
        for c in chunk.choices:
            text = c.delta.content or (c.delta.model_extra or {}).get("reasoning_content") or ""
            if round1 is None and text.startswith("Round 1/"):
                round1 = time.perf_counter() - t
            elif round1 is not None and first is None and text:
                first = time.perf_counter() - t
        perception = (chunk.model_extra or {}).get("perception") or perception
    wall = time.perf_counter() - t
    rounds = perception.get("rounds") or [{}]
    media = (perception.get("video_seconds") or 0) + (rounds[0].get("frames_seconds") or 0)
    # vLLM's prefill of round 1 (what its caches can save): the gateway's own record, from its call to vLLM to the
    # first token. The first text a client sees after "Round 1/N" comes only at the round's end when the reply has no
    # <think> tag to stream as reasoning (random weights), so it is the fallback for an older gateway only.
    seen = round(first - round1, 3) if first and round1 is not None else None
    return {
        "first_token_s": round(first, 3) if first else None,
        "round1_ttft_s": rounds[0].get("first_token_seconds") or seen,
        "round1_first_text_after_start_s": seen,
        "media_before_round1_s": round(media, 3),
        "wall_s": round(wall, 3),
        "round_s": [x.get("seconds") for x in rounds],
        "frames": rounds[0].get("frames"),
        "visual_tokens": rounds[0].get("visual_tokens"),
    }


def capture(fn):
    """Run fn with the gateway's capture hook on; return its result and the vLLM calls it made, in order."""
    for f in glob.glob(os.path.join(CAP, "*.json")):
        os.remove(f)
    open(os.path.join(CAP, "on"), "w").close()
    try:
        out = fn()
    finally:
        os.remove(os.path.join(CAP, "on"))
    calls = []
    for f in sorted(glob.glob(os.path.join(CAP, "*.json"))):
        with open(f) as fh:
            calls.append(json.load(fh))
    return out, calls


def direct(params: dict, model: str | None = None) -> dict:
    """Replay one captured round straight to vLLM, as the gateway calls it (streamed, usage at the end)."""
    p = dict(params)
    if model:
        p["model"] = model
    p.pop("extra_headers", None)
    p.pop("stream", None)
    t = time.perf_counter()
    usage = first = None
    for chunk in vl.chat.completions.create(**p, stream=True):
        if (
            first is None
            and chunk.choices
            and (chunk.choices[0].delta.content or (chunk.choices[0].delta.model_extra or {}).get("reasoning_content"))
        ):
            first = time.perf_counter() - t
        if chunk.usage is not None:
            usage = chunk.usage
    return {
        "wall_s": round(time.perf_counter() - t, 3),
        "ttft_s": round(first, 3) if first else None,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
    }


def with_question(body: dict, text: str) -> dict:
    """A captured round with another question text after the same video part."""
    b = copy.deepcopy(body)
    b["messages"][0]["content"][1]["text"] = text + "\n\n" + b["messages"][0]["content"][1]["text"]
    return b


def uncached(body: dict) -> dict:
    """The same round as vLLM would take it with its caches off: a uuid never sent (its multimodal caches and the
    prefix blocks keyed by the video miss) and a cache salt (no prefix block is shared with any other request)."""
    b = copy.deepcopy(body)
    b["messages"][0]["content"][0]["uuid"] = "bench-" + uuid.uuid4().hex
    b.setdefault("extra_body", {})["cache_salt"] = uuid.uuid4().hex
    return b


def vllm_caches() -> dict:
    """vLLM's cache counters from its /metrics: prefix cache (tokens) and multimodal processor cache (items)."""
    with urllib.request.urlopen(f"{VL}/metrics", timeout=30) as r:
        lines = r.read().decode().splitlines()
    names = ("prefix_cache_queries", "prefix_cache_hits", "mm_cache_queries", "mm_cache_hits")
    return {n: sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith((f"vllm:{n}_total{{", f"vllm:{n}_total ")))
            for n in names}


def cache_delta(before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in after}
    d["prefix_hit_rate"] = ratio(d["prefix_cache_hits"], d["prefix_cache_queries"])
    d["mm_hit_rate"] = ratio(d["mm_cache_hits"], d["mm_cache_queries"])
    return d


def direct_seq(rounds: list[dict], model: str | None = None) -> dict:
    t = time.perf_counter()
    per = [direct(r, model) for r in rounds]
    return {"wall_s": round(time.perf_counter() - t, 3), "rounds": per}


def concurrent(n: int, fn) -> dict:
    out, errs = [None] * n, []

    def work(i):
        try:
            t = time.perf_counter()
            fn(i)
            out[i] = time.perf_counter() - t
        except Exception as e:
            errs.append(repr(e)[:300])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    lat = [x for x in out if x is not None]
    return {
        "n": n,
        "wall_s": round(wall, 3),
        "answers_per_s": round(len(lat) / wall, 3),
        "p50_latency_s": p50(lat),
        "max_latency_s": round(max(lat), 3) if lat else None,
        "errors": errs[:3],
        "n_errors": len(errs),
    }


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def s_warmup():
    """vLLM's first multimodal requests pay one-time costs (compilation for new shapes): pay them with the
    gateway's own requests for the clip, untimed, at each frame count measured later."""
    for frames in (None, 16, 64, 128):
        ask(1, frames=frames, video=f"{BASE}/cold4.mp4")
    ask(3, video=f"{BASE}/cold4.mp4")


def s_models():
    res["gateway_models"] = [m.id for m in gw.models.list().data]
    with urllib.request.urlopen(f"{GW}/ready", timeout=30) as r:
        res["gateway_ready"] = r.status


def s_cold():
    runs = [ask(3, video=f"{BASE}/cold{i}.mp4") for i in (1, 2, 3)]
    res["cold_3r"] = {
        "p50_s": p50([r["wall_s"] for r in runs]),
        "runs": runs,
        "outside_rounds_s": p50([r["wall_s"] - r["round_s_sum"] for r in runs]),
        # The media split: getting the video (fetch, sanitize) and each round's frames (index, extraction).
        "video_s_p50": p50([r["video_s"] or 0 for r in runs]),
        "frames_s_p50_by_round": [p50([r["rounds"][k]["frames_seconds"] or 0 for r in runs]) for k in range(3)],
    }
    log("cold", [r["wall_s"] for r in runs], runs[0]["rounds"][:1])


def s_warm():
    runs = [ask(3, video=f"{BASE}/cold1.mp4") for _ in range(3)]
    res["warm_3r"] = {
        "p50_s": p50([r["wall_s"] for r in runs]),
        "runs": runs,
        "outside_rounds_s": p50([r["wall_s"] - r["round_s_sum"] for r in runs]),
        # The media split: getting the video (fetch, sanitize) and each round's frames (index, extraction).
        "video_s_p50": p50([r["video_s"] or 0 for r in runs]),
        "frames_s_p50_by_round": [p50([r["rounds"][k]["frames_seconds"] or 0 for r in runs]) for k in range(3)],
    }
    res.setdefault("ratios", {})["cold_over_warm_3r"] = ratio(res["cold_3r"]["p50_s"], res["warm_3r"]["p50_s"])
    log("warm", [r["wall_s"] for r in runs], res["ratios"])


def s_capture():
    ask(1)  # the clip itself, so that what is captured below is a warm request
    _, CAPTURED["r3"] = capture(lambda: ask(3))
    body = CAPTURED["r3"][0]
    url = body["messages"][0]["content"][0]["video_url"]["url"]
    res["captured"] = {
        "calls": len(CAPTURED["r3"]),
        "data_url_bytes": len(url),
        "frames_in_data_url": url.count(",") + 1 if url.startswith("data:") else None,
        "video_url_head": url[:80],
        "extra_body": body.get("extra_body"),
        "sampling": {k: body.get(k) for k in ("max_tokens", "max_completion_tokens", "temperature")},
    }
    log("captured", {k: v for k, v in res["captured"].items() if k != "extra_body"})


def s_loop3():
    g = [ask(3) for _ in range(3)]
    d = [direct_seq(CAPTURED["r3"]) for _ in range(3)]
    res["loop_3r"] = {
        "gateway_p50_s": p50([x["wall_s"] for x in g]),
        "direct_p50_s": p50([x["wall_s"] for x in d]),
        "gateway_runs": g,
        "direct_runs": d,
    }
    res.setdefault("ratios", {})["loop_3r_gateway_over_direct"] = ratio(
        res["loop_3r"]["gateway_p50_s"], res["loop_3r"]["direct_p50_s"]
    )
    log("loop3", res["ratios"])


def s_frames():
    sizes: dict = {}
    for n in (16, 64, 128):
        _, calls = capture(lambda n=n: ask(1, frames=n))
        g = [ask(1, frames=n) for _ in range(4)]
        d = [direct(calls[0]) for _ in range(4)]
        res[f"round_{n}f"] = {
            "gateway_p50_s": p50([x["wall_s"] for x in g]),
            "direct_p50_s": p50([x["wall_s"] for x in d]),
            "frames_sent": g[0]["rounds"][0]["frames"],
            "frame_size": g[0]["rounds"][0]["frame_size"],
            "visual_tokens": g[0]["rounds"][0]["visual_tokens"],
            "usage": g[0]["usage"],
            "direct_ttft_p50_s": p50([x["ttft_s"] for x in d if x["ttft_s"]]),
            "gateway_runs": [x["wall_s"] for x in g],
            "direct_runs": [x["wall_s"] for x in d],
        }
        res.setdefault("ratios", {})[f"round_{n}f_gateway_over_direct"] = ratio(
            res[f"round_{n}f"]["gateway_p50_s"], res[f"round_{n}f"]["direct_p50_s"]
        )
        sizes[str(n)] = res[f"round_{n}f"]["frame_size"]
        os.makedirs("/tmp/up", exist_ok=True)
        with open("/tmp/up/frame_sizes.json", "w") as f:
            json.dump(sizes, f)
        log(f"round {n}f", res[f"round_{n}f"]["gateway_p50_s"], res[f"round_{n}f"]["direct_p50_s"])


def s_first_byte():
    runs = [ask_stream(3) for _ in range(3)]
    res["stream_3r"] = {
        "first_chunk_p50_s": p50([r["first_chunk_s"] for r in runs]),
        "first_reasoning_p50_s": p50([r["first_reasoning_s"] for r in runs]),
        "first_content_p50_s": p50([r["first_content_s"] for r in runs]),
        "runs": runs,
    }
    log("stream", res["stream_3r"])


def s_lora():
    body = json.dumps({"path": "/tmp/up/lora-r16", "name": ADAPTER}).encode()
    req = urllib.request.Request(
        f"{GW}/admin/adapters", body, {"content-type": "application/json", "authorization": f"Bearer {ADMIN_KEY}"}
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        card = json.load(r)
    res["lora_hot_load"] = {
        "seconds": round(time.perf_counter() - t, 3),
        "status": 201,
        "rank": card.get("rank"),
        "listed": ADAPTER in [m.id for m in gw.models.list().data],
    }
    ask(1, model=ADAPTER)
    _, calls = capture(lambda: ask(1, model=ADAPTER))
    g = [ask(1, model=ADAPTER) for _ in range(3)]
    d = [direct(calls[0]) for _ in range(3)]
    base = [direct(calls[0], model=MODEL) for _ in range(3)]
    res["lora_1r"] = {
        "gateway_p50_s": p50([x["wall_s"] for x in g]),
        "direct_p50_s": p50([x["wall_s"] for x in d]),
        "direct_base_model_p50_s": p50([x["wall_s"] for x in base]),
    }
    r = res.setdefault("ratios", {})
    r["lora_1r_gateway_over_direct"] = ratio(res["lora_1r"]["gateway_p50_s"], res["lora_1r"]["direct_p50_s"])
    r["lora_over_base_direct"] = ratio(res["lora_1r"]["direct_p50_s"], res["lora_1r"]["direct_base_model_p50_s"])
    log("lora", res["lora_hot_load"], res["lora_1r"])


def s_conc(n: int, iters: int):
    rounds = CAPTURED["r3"][:iters]
    g = concurrent(n, lambda i: ask(iters, question=f"{Q}\n(user {i})"))
    d = concurrent(n, lambda i: direct_seq(rounds))
    res[f"conc{n}_{iters}r"] = {"gateway": g, "direct": d}
    res.setdefault("ratios", {})[f"conc{n}_{iters}r_throughput_gateway_over_direct"] = ratio(
        g["answers_per_s"], d["answers_per_s"]
    )
    log(f"conc{n} {iters}r gateway", g, "direct", d)


def remux(src: str, name: str) -> str:
    """A copy of src with other bytes (a metadata tag): a video neither the gateway nor vLLM has seen; its URL."""
    # A name and title of their own each time: the gateway knows a URL it fetched before, and a second run on one
    # machine must not find the first's copy in the caches.
    name = f"{name}-{uuid.uuid4().hex[:12]}.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, "-map", "0", "-c", "copy", "-metadata", f"title={name}",
                    os.path.join(WWW, name)], check=True, timeout=300)
    return f"{BASE}/{name}"


def hour_video() -> tuple[str, str]:
    """The 60-min video (made once): one minute of 720p30 testsrc2, H.264 with a 2 s GOP at 300 kbit/s and AAC, looped
    60 times by stream copy (seconds, not an hour of encoding). Falls back to looping the 1080p clip without x264."""
    dst, said = os.path.join(WWW, "hour.mp4"), os.path.join(WWW, "hour.txt")
    if os.path.exists(said):
        with open(said) as f:
            return dst, f.read()
    minute = os.path.join(WWW, "minute720.mp4")
    made = subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=60",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60", "-c:v", "libx264", "-preset",
         "veryfast", "-b:v", "300k", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k", "-shortest",
         minute], capture_output=True, text=True, timeout=300)
    what = "60 min 1280x720 30 fps H.264 (2 s GOP, 300 kbit/s) + AAC: one generated minute looped"
    if made.returncode != 0:
        log("no libx264 here, looping the 1080p clip:", made.stderr[-300:])
        minute, what = os.path.join(WWW, "clip1080.mp4"), "60 min 1920x1080 30 fps H.264 (2 s GOP): the clip looped"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "59", "-i", minute, "-map", "0", "-c", "copy",
                    "-movflags", "+faststart", dst], check=True, timeout=300)
    with open(said, "w") as f:
        f.write(what)
    return dst, what


def follow_up(key: str, src: str, repeats: int, warm_up: bool) -> None:
    """A first and a second, different question about a video new to the gateway and to vLLM (3 rounds, streamed),
    with vLLM's caches as in production; then, in the same run, the second question's round 1 straight to vLLM with a
    third text, once as the gateway sends it (caches on) and once with its caches defeated (caches off)."""
    if warm_up:  # vLLM's first rounds at this frame count pay one-time costs: not in the figures
        ask(1, video=remux(src, f"{key}-warm"))
    runs = []
    for i in range(repeats):
        video = remux(src, f"{key}-{i}")
        m0 = vllm_caches()
        first, calls1 = capture(lambda video=video: ask_streamed(3, video=video))
        m1 = vllm_caches()
        second, calls2 = capture(lambda video=video: ask_streamed(3, question=FOLLOW_UP, video=video))
        m2 = vllm_caches()
        parts = [c["messages"][0]["content"][0] for c in (calls1[0], calls2[0])]
        on = direct(with_question(calls2[0], f"Asked third ({i})."))
        off = direct(uncached(with_question(calls2[0], f"Asked fourth ({i}).")))
        answer_on = direct_seq([with_question(c, f"Asked fifth ({i}).") for c in calls2])
        m3 = vllm_caches()
        answer_off = direct_seq([uncached(with_question(c, f"Asked sixth ({i}).")) for c in calls2])
        m4 = vllm_caches()
        runs.append({
            "first": first, "second": second,
            "round1_video_part_identical": json.dumps(parts[0], sort_keys=True) == json.dumps(parts[1], sort_keys=True),
            "uuid": parts[1].get("uuid"),
            "vllm_caches_first": cache_delta(m0, m1), "vllm_caches_second": cache_delta(m1, m2),
            "vllm_caches_direct_on": cache_delta(m2, m3), "vllm_caches_direct_off": cache_delta(m3, m4),
            "direct_round1_on": on, "direct_round1_off": off,
            "direct_answer_on_s": answer_on["wall_s"], "direct_answer_off_s": answer_off["wall_s"],
        })
        log(key, i, {k: runs[-1][k] for k in ("round1_video_part_identical", "vllm_caches_second")},
            first["round1_ttft_s"], second["round1_ttft_s"], on["ttft_s"], off["ttft_s"])
    pick = lambda *path: p50([_dig(r, path) for r in runs if _dig(r, path) is not None])  # noqa: E731
    out = res.setdefault(key, {})
    out.update({
        "runs": runs,
        "frames": runs[0]["second"]["frames"] if runs else None,
        "visual_tokens": runs[0]["second"]["visual_tokens"] if runs else None,
        "first_round1_ttft_p50_s": pick("first", "round1_ttft_s"),
        "second_round1_ttft_p50_s": pick("second", "round1_ttft_s"),
        "first_token_p50_s": [pick("first", "first_token_s"), pick("second", "first_token_s")],
        "first_answer_p50_s": pick("first", "wall_s"),
        "second_answer_p50_s": pick("second", "wall_s"),
        "direct_round1_ttft_on_p50_s": pick("direct_round1_on", "ttft_s"),
        "direct_round1_ttft_off_p50_s": pick("direct_round1_off", "ttft_s"),
        "direct_answer_on_p50_s": pick("direct_answer_on_s"),
        "direct_answer_off_p50_s": pick("direct_answer_off_s"),
        "second_prefix_hit_rate_p50": pick("vllm_caches_second", "prefix_hit_rate"),
        "all_round1_parts_identical": all(r["round1_video_part_identical"] for r in runs),
    })
    r = res.setdefault("ratios", {})
    r[f"{key}_round1_ttft_second_over_first"] = ratio(out["second_round1_ttft_p50_s"], out["first_round1_ttft_p50_s"])
    r[f"{key}_round1_ttft_cached_over_uncached_direct"] = ratio(
        out["direct_round1_ttft_on_p50_s"], out["direct_round1_ttft_off_p50_s"])
    r[f"{key}_answer_second_over_first"] = ratio(out["second_answer_p50_s"], out["first_answer_p50_s"])
    r[f"{key}_answer_cached_over_uncached_direct"] = ratio(out["direct_answer_on_p50_s"],
                                                           out["direct_answer_off_p50_s"])
    log(key, {k: v for k, v in r.items() if k.startswith(key)})


def _dig(d, path):
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def s_followup():
    res["followup_60s"] = {"video": res["config"]["video"]}
    follow_up("followup_60s", os.path.join(WWW, "clip1080.mp4"), 3, warm_up=False)


def s_followup60m():
    t = time.perf_counter()
    src, what = hour_video()
    res["followup_60m"] = {"video": what, "made_s": round(time.perf_counter() - t, 1)}
    log("hour video", what, res["followup_60m"]["made_s"], "s")
    follow_up("followup_60m", src, 1, warm_up=True)


def s_long60():
    """Issue 29: a 60-min 720p video (2 s GOP) new to the gateway and to vLLM, asked about through the openai SDK at
    the gateway's default frames and zoom (3 rounds; replies capped at BENCH_MAX_TOKENS, as every step here, since
    random weights never stop on their own): the whole answer's wall time, each round's split, frames and visual
    tokens; then the same for the 60 s 1080p clip. One untimed answer about another copy first pays vLLM's one-time
    costs for this frame count."""
    t = time.perf_counter()
    src, what = hour_video()
    out = res.setdefault("long60", {})
    out.update({"video": what, "made_s": round(time.perf_counter() - t, 1)})
    ask(3, video=remux(src, "long60-warm"))
    for key, source in (("hour", src), ("minute", os.path.join(WWW, "clip1080.mp4"))):
        out[key] = ask(3, video=remux(source, f"long60-{key}"))
        log("long60", key, out[key]["wall_s"], "s", [(r["frames"], r["visual_tokens"], r["seconds"],
                                                      r["frames_seconds"]) for r in out[key]["rounds"]])
        save()
    res.setdefault("ratios", {})["long60_hour_over_minute"] = ratio(out["hour"]["wall_s"], out["minute"]["wall_s"])


def s_metrics():
    with urllib.request.urlopen(f"{GW}/metrics", timeout=30) as r:
        txt = r.read().decode()
    res["gateway_metrics_sample"] = [
        line for line in txt.splitlines() if line.startswith(("vchat_answers", "vchat_jobs", "vchat_admission"))
    ][:40]


STEPS = [
    ("models", 5, s_models),
    ("warmup", 40, s_warmup),
    ("cold", 40, s_cold),
    ("warm", 25, s_warm),
    ("capture", 15, s_capture),
    ("loop3", 40, s_loop3),
    ("first_byte", 20, s_first_byte),
    ("frames", 70, s_frames),
    ("conc32_3r", 60, lambda: s_conc(32, 3)),
    ("lora", 40, s_lora),
    ("conc8_3r", 30, lambda: s_conc(8, 3)),
    ("metrics", 2, s_metrics),
    # Follow-up questions about one video need vLLM's caches on (BENCH_VLLM_EXTRA without the cache flags).
    ("followup", 110, s_followup),
    ("followup60m", 200, s_followup60m),
    ("long60", 200, s_long60),
]
NEEDED = {"models", "capture"}

if __name__ == "__main__":
    only = set(sys.argv[1:])
    if os.path.exists(OUT) and only:
        with open(OUT) as f:
            res.update(json.load(f))
    for name, need, fn in STEPS:
        if only and name not in only and name not in NEEDED:
            continue
        if DEADLINE - time.time() < need:
            log(f"skip {name}: {DEADLINE - time.time():.0f} s left, needs ~{need} s")
            res.setdefault("skipped", []).append(name)
            save()
            continue
        log(f"step {name}")
        t = time.time()
        try:
            fn()
        except Exception as e:
            traceback.print_exc()
            res.setdefault("errors", {})[name] = repr(e)[:1500]
        res.setdefault("step_seconds", {})[name] = round(time.time() - t, 1)
        save()
    print(json.dumps(res.get("ratios", {}), indent=1))
    print(json.dumps({k: v for k, v in res.items() if k in ("errors", "skipped", "step_seconds")}, indent=1))
