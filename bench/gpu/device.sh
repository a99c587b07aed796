#!/usr/bin/env bash
# On the GPU machine, from the project root (the device tool runs there): assembles the parts earlier calls copied
# to /tmp/up (bench/gpu/prepare.sh), installs the wheels into /tmp/site and ffmpeg/ffprobe into /tmp/ff, builds the
# 7B-shaped model directory (make_model.py) and a rank-16 LoRA, starts vLLM THROUGH THE PROJECT'S LAUNCHER
# (python -m vllm_launch, VCHAT_DEVICE=gpu: the flags vllm_launch/command.py builds are what is tested), the gateway
# (python -m gateway, via gw_launch.py's capture hook) and a loopback HTTP server for the clip, then runs
# bench_gateway.py. Results and logs go to $OUT. Everything is started with setsid, so a later call can run more:
#   BENCH_STEP=hf bash bench/gpu/device.sh        (stops vLLM, runs the HF generate baseline)
#   BENCH_STEP=gateway BENCH_ONLY="lora conc32_3r" bash bench/gpu/device.sh
set -u
T0=$(date +%s); export BENCH_DEADLINE=$((T0 + ${BENCH_BUDGET_S:-560}))
ROOT=$(pwd); OUTD=${OUT:-/tmp/bench-out}; mkdir -p "$OUTD" /tmp/up
STEP=${BENCH_STEP:-all}
say() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
collect() {
  tail -c 2000000 "$ROOT/var/log/vllm.log" > "$OUTD/vllm.log" 2>/dev/null
  tail -c 2000000 /tmp/up/gateway.log > "$OUTD/gateway.log" 2>/dev/null
  cp /tmp/up/launcher.log "$OUTD/launcher.log" 2>/dev/null
}
export PYTHONPATH=/tmp/site PATH=/tmp/ff:$PATH
cd /tmp/up
if [ ! -e /tmp/up/.installed ]; then
  python3 - <<'PY' || { echo "a part is missing or damaged: carry every part again"; exit 3; }
import hashlib, json, os, sys
want = json.load(open("manifest.json"))
bad = [p for p, h in want.items() if not os.path.exists(p) or hashlib.sha256(open(p, "rb").read()).hexdigest() != h]
print("parts:", sorted(want), "missing or damaged:", bad)
sys.exit(1 if bad else 0)
PY
  cat part? > payload.tar && tar xf payload.tar && rm -f part? payload.tar
  # Two versions of one package (resolve_wheels can fetch both when two requirements pin differently: opentelemetry-api
  # 1.45.2 and 1.45.3 on 2026-12-07) make pip refuse the whole install: keep the newest of each.
  python3 - <<'PY'
import collections, os
from packaging.version import Version
found = collections.defaultdict(list)
for folder in ("/tmp/up/w", "/tmp/up/gw"):
    for name in os.listdir(folder):
        if name.endswith(".whl"):
            found[name.split("-")[0].lower()].append((Version(name.split("-")[1]), os.path.join(folder, name)))
for versions in found.values():
    for _, path in sorted(versions)[:-1]:
        print("older duplicate left out:", os.path.basename(path))
        os.remove(path)
PY
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/up/w/*.whl /tmp/up/gw/*.whl 2>&1 | tail -3
  python3 -c "import tarfile; tarfile.open('/tmp/up/ffmpeg.tar.xz').extractall('/tmp/ff')"
  python3 "$ROOT/bench/gpu/make_m7.py" /tmp/up/m7 2>&1 | tail -1
  python3 "$ROOT/bench/gpu/make_lora.py" /tmp/up/lora-r16 /tmp/up/m7 2>&1 | tail -1
  touch /tmp/up/.installed
  say "installed; $(ffmpeg -hide_banner -version | head -1)"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -V
  python3 -c "import vllm, transformers, torch, fastapi, openai, pydantic; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__, 'fastapi', fastapi.__version__, 'openai', openai.__version__, 'pydantic', pydantic.__version__)"
  echo "cpus $(nproc)"; } > "$OUTD/env.txt" 2>&1; cat "$OUTD/env.txt"

if [ "$STEP" = hf ]; then
  pkill -f "vllm_launch" ; pkill -f "vllm.entrypoints" ; pkill -f gw_launch.py; sleep 5
  PYTHONUNBUFFERED=1 timeout $(( BENCH_DEADLINE - $(date +%s) )) python3 "$ROOT/bench/gpu/bench_hf.py"
  say "done"; exit 0
fi

export VCHAT_MODEL=/tmp/up/m7 VCHAT_DEVICE=gpu VCHAT_VLLM_PYTHON=$(command -v python3) VCHAT_ADAPTERS_DIR=/tmp/vchat/adapters \
  VCHAT_MEDIA_DIR=/tmp/vchat/media VCHAT_ADMIN_KEY=bench-admin
# Random weights; prefix and multimodal caches off, so that every round pays full price as a real glue round with new
# frames would (random weights never glue: rounds 2-3 see round 1's frames again).
# BENCH_CACHES=on keeps them as production has them (the follow-up steps measure what they save).
if [ "${BENCH_CACHES:-off}" = on ]; then NOCACHE=''; else NOCACHE=',"--no-enable-prefix-caching","--mm-processor-cache-gb","0"'; fi
export VCHAT_VLLM_EXTRA_ARGS=${BENCH_VLLM_EXTRA:-"[\"--load-format\",\"dummy\"$NOCACHE]"}
if [ "$STEP" = all ]; then
  mkdir -p /tmp/vchat/adapters /tmp/vchat/media
  # From the project root with the project on the path: vllm_launch is the project's, vLLM the carried wheels'.
  cd "$ROOT"
  PYTHONPATH="$ROOT:/tmp/site" python3 -m vllm_launch --print-args > "$OUTD/vllm_args.json" 2>&1
  tr -d '\n' < "$OUTD/vllm_args.json" | cut -c1-1500; echo
  PYTHONPATH="$ROOT:/tmp/site" setsid nohup python3 -m vllm_launch --no-install > /tmp/up/launcher.log 2>&1 < /dev/null &
  LPID=$!; say "vllm_launch started (pid $LPID)"
  mkdir -p /tmp/www /tmp/cap && cp /tmp/up/clip1080.mp4 /tmp/www/
  # Copies with other bytes (a metadata tag) are new videos to the gateway: each cold run sees a video for the first time.
  for i in 1 2 3 4; do ffmpeg -v error -y -i /tmp/up/clip1080.mp4 -c copy -metadata title="cold $i" /tmp/www/cold$i.mp4; done
  (cd /tmp/www && setsid nohup python3 -m http.server 8090 --bind 127.0.0.1 > /tmp/up/http.log 2>&1 < /dev/null &)
  VCHAT_HOST=127.0.0.1 VCHAT_PORT=8000 VCHAT_VLLM_URL=http://127.0.0.1:8001 VCHAT_MEDIA_ALLOWED_HOSTS=127.0.0.1 \
    BENCH_CAPTURE_DIR=/tmp/cap PYTHONPATH="$ROOT:/tmp/site" \
    setsid nohup python3 "$ROOT/bench/gpu/gw_launch.py" > /tmp/up/gateway.log 2>&1 < /dev/null &
  ok=0
  for i in $(seq 1 300); do
    if curl -sf 127.0.0.1:8001/health >/dev/null; then ok=1; say "vLLM healthy"; break; fi
    # An exited launcher may linger as a zombie (kill -0 still succeeds): ask ps for its state.
    st=$(ps -o stat= -p $LPID 2>/dev/null | cut -c1)
    if [ -z "$st" ] || [ "$st" = Z ]; then say "vllm_launch exited: $(tail -3 /tmp/up/launcher.log)"; break; fi
    [ $(date +%s) -gt $((BENCH_DEADLINE - 60)) ] && { say "vLLM not healthy before the deadline"; break; }
    sleep 2
  done
  grep -E "ERROR|Error|error:|KV cache|CUDA graph|Loading|took|encoder cache|backend|max_num_seqs" "$ROOT/var/log/vllm.log" 2>/dev/null | cut -c1-300 | tail -25
  tail -5 /tmp/up/launcher.log; collect
  [ $ok = 1 ] || { say "no vLLM: nothing measured"; exit 4; }
fi
for i in $(seq 1 30); do curl -sf 127.0.0.1:8000/ready >/dev/null && break; sleep 1; done
say "gateway /ready: $(curl -s 127.0.0.1:8000/ready | head -c 300)"
curl -s 127.0.0.1:8001/v1/models | head -c 400; echo
curl -s 127.0.0.1:8001/metrics | grep -E "^vllm:cache_config_info|num_gpu_blocks" | head -3 > "$OUTD/vllm_cache.txt"
cd "$ROOT"
VIDEO_BASE=http://127.0.0.1:8090 BENCH_CAPTURE_DIR=/tmp/cap PYTHONUNBUFFERED=1 \
  timeout $(( BENCH_DEADLINE - $(date +%s) + 20 )) python3 bench/gpu/bench_gateway.py ${BENCH_ONLY:-}
grep -v '"level": "INFO"' /tmp/up/gateway.log | cut -c1-400 | tail -15
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
collect; say "done"
