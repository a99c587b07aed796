#!/usr/bin/env bash
# Install vLLM for a machine with an NVIDIA GPU into its own virtual environment (idempotent).
# Usage: vllm_launch/install_gpu.sh [VENV_DIR]        (default: .venv-vllm beside this repo's root)
set -euo pipefail
# The release measured on an H200 with the 7B shape (bench/gpu/, bench/README.md); the GPU image uses the same.
VLLM_VERSION="${VLLM_VERSION:-0.26.0}"
PEFT_SPEC="${PEFT_SPEC:-peft>=0.17}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${VCHAT_VLLM_VENV:-$root/.venv-vllm}}"
stamp="$venv/.vchat-installed"
want="vllm==$VLLM_VERSION $PEFT_SPEC"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "vLLM (GPU) already installed in $venv"; exit 0
fi
# The machine's local CPU-only torch wheel must not be picked for a GPU install.
unset PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null
[[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --progress-bar off "vllm==$VLLM_VERSION" "$PEFT_SPEC"
"$venv/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
echo "$want" > "$stamp"
