# Two commands on a fresh machine: `make run` and `make test` (each bootstraps .venv).
SHELL := /bin/bash
# The first Python 3.10 that actually runs (a pyenv shim without a selected version does not).
PYTHON310 ?= $(shell for p in python3.10 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python 2>/dev/null); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
export TF_USE_LEGACY_KERAS := 1
export PYTHONWARNINGS := ignore::FutureWarning,ignore::DeprecationWarning
export TF_CPP_MIN_LOG_LEVEL := 1
ARGS ?=
DOCKER ?= docker
IMAGE ?= fer-pipeline
# The tag `fer-pipeline compile --image REGISTRY/fer-pipeline` names: the code's fingerprint.
TAG ?= $(shell python3 -m pipeline.code_fingerprint 2>/dev/null || echo dev)

.PHONY: venv run test lint bench image clean

venv: $(VENV)/.installed

# Idempotent: reinstalls only when a lock or setup.py changed. requirements.lock is the
# runtime (what the image installs too); requirements-dev.lock adds test and lint tools on top.
# editable_mode=compat: pyproject.toml makes `-e .` a PEP 660 install; compat keeps the repo
# root on sys.path as `setup.py develop` did (bench and tests, not packaged, import from anywhere).
$(VENV)/.installed: requirements.lock requirements-dev.lock setup.py
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (set PYTHON310=/path/to/python3.10)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON310) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==24.2 setuptools==70.3.0 wheel==0.44.0
	$(BIN)/python -m pip install -q --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $@

# The main job on the embedded default (synthetic faces); ARGS="--data ../shared/data/fer2013.csv.gz" for real data.
run: venv
	$(BIN)/fer-pipeline run --summary-json runs/summary.json $(ARGS)

# Lint, format and type checks first (seconds), then the tests on two workers, one file
# per worker at a time (pytest-xdist): the end-to-end files are handed out first, longest
# first (tests/conftest.py); most pipeline steps keep one core busy, not two.
TEST_WORKERS ?= 2
test: venv lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests $(ARGS)

# Lint, format check and type check of the core modules (settings in pyproject.toml).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Benchmarks (docs/BENCHMARKS.md): the first run (time, memory), real FER2013 ingest and
# training; serving needs a pushed model.
BENCH_DATA ?= ../shared/data/fer2013.csv.gz
BENCH_MODEL ?= runs/serving/fer
BENCH_ARCHITECTURES ?= improved,vgg,vgg_bn,mobilenet_v2,resnet50
bench: venv
	$(BIN)/python -m bench.first_run
	$(BIN)/python -m bench.ingest --data $(BENCH_DATA) --profile
	$(BIN)/python -m bench.training --data $(BENCH_DATA) --architectures $(BENCH_ARCHITECTURES)
	$(BIN)/python -m bench.serving --model-base-path $(BENCH_MODEL)

# The pipeline image for Kubeflow (Dockerfile); needs a Docker engine.
image:
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "make image: '$(DOCKER)' not found; install Docker (or DOCKER=podman)"; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make image: no Docker engine reachable; cannot build $(IMAGE):$(TAG)"; exit 1; }
	$(DOCKER) build -t $(IMAGE):$(TAG) .
	$(DOCKER) run --rm $(IMAGE):$(TAG) python -c "import tfx, pipeline.pipeline; print('image ok, tfx', tfx.__version__)"
	@echo "built $(IMAGE):$(TAG); push it and compile with --image REGISTRY/$(IMAGE):$(TAG)"

clean:
	rm -rf runs
