#!/usr/bin/env bash
# Install the pinned Open WebUI (the end-to-end test's chat UI) into its own virtual environment, with a CPU
# torch (constraints-webui.txt). Never imported by the gateway or its tests' own venv: Open WebUI pins ~100
# packages (fastapi, pydantic, openai...) at versions of its own.
#
# Idempotent: a stamp file records what was installed; a second run with the same pins installs nothing.
# pip's download cache (~/.cache/pip) is reused, so a reinstall on the same machine needs no downloads.
#
# Usage: tests/e2e/install_webui.sh [VENV_DIR]        (default: .venv-webui beside this repo's root)
set -euo pipefail

OPEN_WEBUI_VERSION="${OPEN_WEBUI_VERSION:-0.12.4}"
PYTHON="${PYTHON:-python3}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-${VCHAT_WEBUI_VENV:-$root/.venv-webui}}"
constraints="$here/constraints-webui.txt"
stamp="$venv/.vchat-installed"
want="open-webui==$OPEN_WEBUI_VERSION $(sha256sum "$constraints" | cut -c1-16)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/open-webui" --help >/dev/null 2>&1; then
  echo "Open WebUI $OPEN_WEBUI_VERSION already installed in $venv"
  exit 0
fi

# pip's own settings only: the machine's config points at local mirror folders that hold none of these
# packages (one warning per package) and caps torch, which the constraints file pins anyway.
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL
export PIP_CONFIG_FILE=/dev/null
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && export PIP_CERT="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"

# The CPU torch wheel: the machine's wheel folder when it has one, else PyTorch's own CPU index.
links=()
if compgen -G "/opt/wheels/torch-*+cpu-*.whl" >/dev/null; then
  links=(--find-links /opt/wheels)
else
  links=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi

echo "Installing Open WebUI $OPEN_WEBUI_VERSION into $venv (CPU torch)"
start=$SECONDS
rm -f "$stamp"
[[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --progress-bar off --disable-pip-version-check \
  "${links[@]}" --constraint "$constraints" "open-webui==$OPEN_WEBUI_VERSION"

# Guard against the trap the constraints exist for: a CUDA torch (and its nvidia-* wheels) slipping in.
"$venv/bin/python" - <<'PY'
import importlib.metadata as md, sys
torch = md.version("torch")
cuda = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-"))
if "+cpu" not in torch or cuda:
    sys.exit(f"expected a CPU torch and no nvidia-* wheels, got torch {torch} and {cuda}")
print(f"open-webui {md.version('open-webui')}, torch {torch}")
PY
echo "$want" > "$stamp"
echo "installed in $((SECONDS - start)) s; $(du -sh "$venv" | cut -f1) on disk"
