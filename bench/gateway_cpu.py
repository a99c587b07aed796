"""Where the gateway's own CPU goes (issue 33 item 4): N concurrent 3-round questions through the real gateway in front
of a stand-in vLLM that speaks vLLM's OpenAI wire format, with the gateway's process CPU counted and profiled.

    .venv/bin/python bench/gateway_cpu.py [--clients 32] [--max-frames 128] [--tokens 256] [--tokens-per-s 0]
                                          [--runs 3] [--no-stream] [--out bench/results/gateway-cpu-<date>.json]

Three processes: this one (a loopback origin serving the clip, and the N clients, which only count the bytes they
get), the gateway (``create_app(Settings(...))`` under uvicorn with the gateway's own config and logging, as
``python -m gateway`` runs it) and the stand-in vLLM (plain asyncio: /health, /v1/models with max_model_len,
/metrics with ``vllm:cache_config_info`` so admission sizes itself by KV tokens as on the H100, and
/v1/chat/completions streamed as vLLM streams it: a role chunk, ``--tokens`` content chunks of one token each, the
finish chunk, the usage chunk, ``data: [DONE]``; each reply is R1.5-shaped, ``<think>…</think><answer>B</answer>
<glue>[(a, b)]</glue>``, so rounds 2 and 3 look closer at a segment as with a real model). The stand-in's replies cost
it next to nothing, so what the run measures on the 2 cores is the gateway's CPU (and the clients').

The clip (60 s 1280x720, tests.support.clips) is fetched and its frames extracted by a warm-up question first; every
measured question then finds its rounds' frames in the gateway's cache, as repeated questions on the H100 did.
Measured: wall time of the N questions, the gateway process's CPU seconds (utime+stime from /proc, per thread too),
CPU per answer and per round; then one more run under cProfile (the event loop's thread, switched on and off by
signals around that run only): the top functions by cumulative and by own time. Runs without the profiler are the
CPU figures; the profiled run's wall is slower (cProfile's own cost) and only its shares count (cProfile counts each
resumption of a coroutine as a call). BENCH_GATEWAY_ROOT=/other/checkout runs that checkout's gateway instead (before
and after a change, same driver).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "videochat-r1.5"
QUESTION = "What moves across the test pattern, and when does it move?\nA. a coloured bar\nB. a white circle\n" \
           "C. a frame counter\nD. nothing moves"
CONTEXT = 40960
KV_BLOCKS, KV_BLOCK = 63192, 16  # an H100's 1,011,072 KV tokens, as vLLM's /metrics says them
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------------
# The stand-in vLLM (its own process).


def reply_tokens(tokens: int, glue: str) -> list[str]:
    """An R1.5-shaped reply of exactly ``tokens`` pieces (about a word each)."""
    tail = ["</think>", "<answer>", "B", "</answer>", "<glue>", glue, "</glue>"]
    filler = max(tokens - len(tail) - 1, 0)
    words = [" the", " bar", " moves", " right", " and", " the", " circle", " turns", "."]
    return ["<think>"] + [words[i % len(words)] for i in range(filler)] + tail


async def stand_in(port: int, tokens: int, tokens_per_s: float) -> None:
    created = int(time.time())
    models = json.dumps({"object": "list", "data": [{
        "id": MODEL, "object": "model", "created": created, "owned_by": "vllm", "root": "/models/videochat-r1.5",
        "parent": None, "max_model_len": CONTEXT, "permission": []}]}).encode()
    metrics = (f'vllm:cache_config_info{{block_size="{KV_BLOCK}",cache_dtype="auto",enable_prefix_caching="True",'
               f'num_gpu_blocks="{KV_BLOCKS}",num_cpu_blocks="0"}} 1.0\n').encode()
    pieces = reply_tokens(tokens, "[(20.0, 30.0)]")
    counter = 0
    sizes: list[int] = []  # each round's request body, bytes

    def plain(status: str, body: bytes, kind: str = "application/json") -> bytes:
        return (f"HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *headers = head.decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ", 2)
                fields = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in headers if ":" in h)}
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                if path == "/v1/models":
                    writer.write(plain("200 OK", models))
                elif path == "/metrics":
                    writer.write(plain("200 OK", metrics, "text/plain; version=0.0.4"))
                elif path == "/bench/sizes":
                    writer.write(plain("200 OK", json.dumps(sizes).encode()))
                elif path == "/health":
                    writer.write(plain("200 OK", b""))
                elif method == "POST" and path == "/v1/chat/completions":
                    sizes.append(len(body))  # read as vLLM reads it; every reply is the same (rounds always stream)
                    counter += 1
                    rid = f"chatcmpl-{counter:08x}"
                    prefix = (f'{{"id":"{rid}","object":"chat.completion.chunk","created":{created},'
                              f'"model":"{MODEL}","choices":[').encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n")
                    first = prefix + b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,' \
                                     b'"finish_reason":null}]}'
                    writer.write(chunk(b"data: " + first + b"\n\n"))
                    interval = 1 / tokens_per_s if tokens_per_s > 0 else 0.0
                    for n, piece in enumerate(pieces):
                        finish = b'"stop"' if n == len(pieces) - 1 else b"null"
                        data = prefix + b'{"index":0,"delta":{"content":' + json.dumps(piece).encode() + \
                            b'},"logprobs":null,"finish_reason":' + finish + b"}]}"
                        writer.write(chunk(b"data: " + data + b"\n\n"))
                        await writer.drain()
                        await asyncio.sleep(interval)  # 0: as fast as possible, yet one chunk per loop turn
                    usage = (f'{{"id":"{rid}","object":"chat.completion.chunk","created":{created},"model":"{MODEL}",'
                             f'"choices":[],"usage":{{"prompt_tokens":7400,"total_tokens":{7400 + len(pieces)},'
                             f'"completion_tokens":{len(pieces)}}}}}').encode()
                    writer.write(chunk(b"data: " + usage + b"\n\n"))
                    writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                else:
                    writer.write(plain("404 Not Found", b'{"detail":"Not Found"}'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------------------------------------------------
# The gateway (its own process): as gateway.serving.serve, plus cProfile of the event loop's thread on SIGUSR1/2.


def serve_gateway(port: int, vllm_url: str, media_dir: str, profile_to: str) -> None:
    import cProfile

    if root := os.environ.get("BENCH_GATEWAY_ROOT"):  # another checkout's gateway (a before/after comparison)
        sys.path.insert(0, root)

    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging
    from gateway.serving import uvicorn_config
    from vchat_settings import Settings

    settings = Settings(vllm_url=vllm_url, port=port, host="127.0.0.1", media_dir=Path(media_dir),
                        media_allowed_hosts=["127.0.0.1"])
    configure_logging(settings.log_level, settings.log_format)
    profiler = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())

    def dump(*_: object) -> None:
        profiler.disable()
        profiler.dump_stats(profile_to)

    signal.signal(signal.SIGUSR2, dump)
    uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()


# ---------------------------------------------------------------------------------------------------------------
# The driver.


def cpu_of(pid: int) -> tuple[float, dict[str, float]]:
    """The process's CPU seconds (utime+stime), and each thread's by name (threads of one name summed)."""
    def seconds(stat: str) -> float:
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    total = seconds(Path(f"/proc/{pid}/stat").read_text())
    threads: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            name = (task / "comm").read_text().strip()
            threads[name] = threads.get(name, 0.0) + seconds((task / "stat").read_text())
    return total, threads


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, __file__, *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(url: str, timeout_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def ask(http: Any, url: str, body: dict[str, Any], stream: bool) -> tuple[float, int]:
    """One question; its wall time and the bytes it got (the client neither parses nor keeps the answer)."""
    started = time.perf_counter()
    got = 0
    async with http.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": stream}) as response:
        response.raise_for_status()
        async for data in response.aiter_raw():
            got += len(data)
    return time.perf_counter() - started, got


async def wave(http: Any, url: str, clients: int, video: str, max_frames: int, stream: bool) -> dict[str, Any]:
    knobs = {"iterations": 3, "max_frames": max_frames}
    bodies = [{"model": MODEL, "temperature": 0, "max_tokens": 4096, "vchat": knobs,
               "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}},
                                                         {"type": "text", "text": f"{QUESTION}\n(user {i})"}]}]}
              for i in range(clients)]
    started = time.perf_counter()
    results = await asyncio.gather(*(ask(http, url, body, stream) for body in bodies), return_exceptions=True)
    wall = time.perf_counter() - started
    errors = [repr(r)[:200] for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    return {"wall_s": round(wall, 3), "errors": len(errors), "error_examples": errors[:3],
            "p50_latency_s": round(statistics.median(r[0] for r in ok), 3) if ok else None,
            "bytes_per_answer": round(statistics.mean(r[1] for r in ok)) if ok else None}


def top(stats_path: Path, key: str, count: int = 25) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(stats_path), stream=io.StringIO())
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = file.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        rows.append({"function": f"{short}:{line}({name})", "calls": calls, "own_s": round(own, 3),
                     "cumulative_s": round(cumulative, 3)})
    rows.sort(key=lambda row: row[key], reverse=True)
    return rows[:count]


def measure(options: argparse.Namespace) -> dict[str, Any]:
    import httpx2

    from tests.support.clips import make_clip
    from tests.support.origin import Origin

    clip = make_clip(seconds=60, size="1280x720")
    origin = Origin().start()
    video = origin.file("/clip720.mp4", clip.read_bytes())
    vllm_port, gw_port = free_port(), free_port()
    vllm_url, gw_url = f"http://127.0.0.1:{vllm_port}", f"http://127.0.0.1:{gw_port}"
    result: dict[str, Any] = {"config": {
        "date": datetime.date.today().isoformat(), "cpus": os.cpu_count(), "clients": options.clients,
        "rounds": 3, "max_frames": options.max_frames, "tokens_per_round": options.tokens,
        "stand_in_tokens_per_s": options.tokens_per_s or "as fast as possible (one chunk per event-loop turn)",
        "client_stream": options.stream, "video": "60 s 1280x720 30 fps H.264 + AAC, loopback origin, warm",
        "gateway_root": os.environ.get("BENCH_GATEWAY_ROOT", str(ROOT)),
        "gateway": "create_app(Settings) under uvicorn_config, logging as configured (json, INFO), own process",
        "vllm": "stand-in (bench/gateway_cpu.py): vLLM's OpenAI wire format, /metrics KV 1,011,072 tokens"}}
    scratch = Path(tempfile.mkdtemp(prefix="bench-gwcpu-"))
    profile_path = scratch / "gateway.prof"
    try:
        with process(["--stand-in", str(vllm_port), str(options.tokens), str(options.tokens_per_s)],
                     scratch / "vllm.log"), \
             process(["--serve-gateway", str(gw_port), vllm_url, str(scratch / "media"), str(profile_path)],
                     scratch / "gateway.log") as gateway:
            wait_http(f"{vllm_url}/health", 30)
            wait_http(f"{gw_url}/health", 60)

            async def drive() -> None:
                limits = httpx2.Limits(max_connections=options.clients * 2,
                                       max_keepalive_connections=options.clients * 2)
                async with httpx2.AsyncClient(timeout=900, limits=limits) as http:
                    # Warm-up: the gateway fetches the clip and extracts every round's frames; vLLM's limits are read.
                    warm = await wave(http, gw_url, 1, video, options.max_frames, options.stream)
                    if warm["errors"]:
                        raise RuntimeError(f"warm-up failed: {warm}")
                    answer = (await http.post(f"{gw_url}/v1/chat/completions", json={
                        "model": MODEL, "max_tokens": 4096,
                        "vchat": {"iterations": 3, "max_frames": options.max_frames},
                        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}},
                                                                  {"type": "text", "text": QUESTION}]}]})).json()
                    rounds = answer["perception"]["rounds"]
                    result["rounds"] = [{k: r.get(k) for k in ("round", "frames", "frame_size", "visual_tokens",
                                                                "frames_seconds", "seconds", "usage")} for r in rounds]
                    runs = []
                    for n in range(options.runs + 1):
                        profiled = n == options.runs
                        if profiled:
                            gateway.send_signal(signal.SIGUSR1)
                            await asyncio.sleep(0.2)
                        cpu0, threads0 = cpu_of(gateway.pid)
                        self0 = time.process_time()
                        got = await wave(http, gw_url, options.clients, video, options.max_frames, options.stream)
                        cpu1, threads1 = cpu_of(gateway.pid)
                        got["gateway_cpu_s"] = round(cpu1 - cpu0, 3)
                        got["gateway_cpu_by_thread_s"] = {name: round(threads1[name] - threads0.get(name, 0.0), 3)
                                                          for name in threads1
                                                          if threads1[name] - threads0.get(name, 0.0) >= 0.01}
                        got["clients_cpu_s"] = round(time.process_time() - self0, 3)
                        got["gateway_cpu_per_answer_s"] = round(got["gateway_cpu_s"] / options.clients, 4)
                        got["gateway_cpu_per_round_ms"] = round(got["gateway_cpu_s"] / options.clients / 3 * 1000, 1)
                        got["gateway_cpu_share_of_wall"] = round(got["gateway_cpu_s"] / got["wall_s"], 3)
                        got["profiled"] = profiled
                        if profiled:
                            gateway.send_signal(signal.SIGUSR2)
                        print(("profiled run: " if profiled else f"run {n + 1}: ") + json.dumps(got), flush=True)
                        runs.append(got)
                    result["runs"] = runs
                    sizes = (await http.get(f"{vllm_url}/bench/sizes")).json()
                    result["request_bytes_per_round"] = {"median": statistics.median(sizes), "min": min(sizes),
                                                         "max": max(sizes), "rounds": len(sizes)}

            asyncio.run(drive())
            deadline = time.monotonic() + 30
            while not profile_path.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        plain = [run for run in result["runs"] if not run["profiled"]]
        result["summary"] = {key: statistics.median(run[key] for run in plain) for key in (
            "wall_s", "gateway_cpu_s", "gateway_cpu_per_answer_s", "gateway_cpu_per_round_ms",
            "gateway_cpu_share_of_wall", "clients_cpu_s")}
        result["profile"] = {"by_cumulative": top(profile_path, "cumulative_s"), "by_own": top(profile_path, "own_s"),
                             "note": "cProfile of the gateway's event-loop thread during the profiled run"}
    finally:
        origin.stop()
    return result


def report(result: dict[str, Any]) -> None:
    config, summary = result["config"], result["summary"]
    print()
    print(f"{config['clients']} concurrent 3-round questions, {config['cpus']} CPUs, stand-in vLLM "
          f"({config['tokens_per_round']} tokens a round, {config['stand_in_tokens_per_s']}), "
          f"client stream={config['client_stream']}")
    for r in result["rounds"]:
        print(f"  round {r['round']}: {r['frames']} frames {r['frame_size']}, {r['visual_tokens']} visual tokens")
    sizes = result["request_bytes_per_round"]
    print(f"  request to vLLM per round: {sizes['median'] / 1e6:.2f} MB (median of {sizes['rounds']})")
    print(f"median of {len(result['runs']) - 1} unprofiled runs: wall {summary['wall_s']:.2f} s, gateway CPU "
          f"{summary['gateway_cpu_s']:.2f} s ({summary['gateway_cpu_share_of_wall']:.2f} of one core), "
          f"{summary['gateway_cpu_per_answer_s'] * 1000:.0f} ms per answer, "
          f"{summary['gateway_cpu_per_round_ms']:.1f} ms per round; clients {summary['clients_cpu_s']:.2f} s")
    for title, key in (("cumulative", "by_cumulative"), ("own time", "by_own")):
        print(f"\ntop 25 by {title} (event-loop thread, profiled run):")
        print(f"{'cum s':>8} {'own s':>8} {'calls':>9}  function")
        for row in result["profile"][key]:
            print(f"{row['cumulative_s']:8.3f} {row['own_s']:8.3f} {row['calls']:9d}  {row['function']}")


def main() -> None:
    if sys.argv[1:2] == ["--stand-in"]:
        port, tokens, rate = sys.argv[2:5]
        asyncio.run(stand_in(int(port), int(tokens), float(rate)))
        return
    if sys.argv[1:2] == ["--serve-gateway"]:
        serve_gateway(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-frames", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="per stream; 0: as fast as possible")
    parser.add_argument("--runs", type=int, default=3, help="unprofiled runs (one profiled run follows)")
    parser.add_argument("--no-stream", dest="stream", action="store_false", help="clients ask with stream=false")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / f"gateway-cpu-{datetime.date.today().isoformat()}.json")
    options = parser.parse_args()
    result = measure(options)
    report(result)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {options.out}")


if __name__ == "__main__":
    main()
