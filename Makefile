# GenDuel quickstart: `make repro` runs the pipeline, `make test` runs the fast tests.
# Both create .venv with the pinned dependencies first (constraints.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

# DVC stage commands call `python`: make it the venv's.
export PATH := $(BIN):$(PATH)
# Measured on a 2-core CPU host: fewer page faults in the allocator, x1.38 on VAE training.
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824

# The GPU profile: the default pipeline at full quality on one CUDA GPU (bf16 autocast; G and D
# keep channels_last). It runs as a DVC experiment, so `dvc exp show` and `dvc params diff`
# list exactly these overrides, and every stage logs its effective params to MLflow.
GPU_PROFILE := -S runtime.device=cuda -S runtime.amp=true \
	-S judge.epochs=10 \
	-S vae.epochs=40 -S vae.width=64 \
	-S gan.epochs=40 -S gan.width=64 -S gan.d_width=96 -S gan.ema_decay=0.999 \
	-S gan.lr_g=0.0002 -S gan.lr_d=0.0001

# The team MLflow server (`make mlflow-server`): a database store (sqlite here by default, or
# MLFLOW_BACKEND=postgresql://user:password@host/db) and proxied artifacts, so clones need
# nothing but HTTP. HOST, PORT and WORKERS (its server processes; the tests start one) go on the
# command line: make mlflow-server HOST=0.0.0.0.
MLFLOW_BACKEND ?= sqlite:///$(CURDIR)/mlflow-server.db
MLFLOW_ARTIFACTS ?= $(CURDIR)/mlflow-server-artifacts
HOST = 127.0.0.1
PORT = 5000
WORKERS = 4

.PHONY: setup repro repro-gpu repro-seeds repro-gpu-seeds test test-e2e test-all lint bench clean mlflow-server

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

repro: setup
	@start=$$(date +%s); $(BIN)/dvc repro && $(BIN)/python -m genduel.timings --since $$start

repro-gpu: setup
	@start=$$(date +%s); $(BIN)/dvc exp run -n gpu-profile $(GPU_PROFILE) && \
	  $(BIN)/python -m genduel.timings --since $$start

# Training seeds (docs/seeds.md): three on the CPU, where seed 0's stages come from the cache of a
# `make repro`; five on one GPU, trained side by side (runtime.concurrent_seeds).
repro-seeds: setup
	@start=$$(date +%s); $(BIN)/dvc exp run -n seeds -S 'runtime.seeds=[0,1,2]' && \
	  $(BIN)/python -m genduel.timings --since $$start

repro-gpu-seeds: setup
	@start=$$(date +%s); $(BIN)/dvc exp run -n gpu-seeds $(GPU_PROFILE) \
	  -S 'runtime.seeds=[0,1,2,3,4]' -S runtime.concurrent_seeds=5 && \
	  $(BIN)/python -m genduel.timings --since $$start

# Tests: `test` is the unit and small integration tests (minutes); `test-e2e` the end-to-end ones
# marked e2e in tests/ (dvc repro in temporary repos, live MLflow and PostgreSQL servers, the
# browser, torchrun); `test-all` runs both in one pytest session, each test once (what CI runs).
test: setup
	$(BIN)/python -m pytest -m "not e2e"

test-e2e: setup
	$(BIN)/python -m pytest -m e2e

test-all: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src pipeline tests bench

bench: setup
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_train.py

mlflow-server: setup
	@echo "MLflow server: http://$(HOST):$(PORT) ($(firstword $(subst :, ,$(MLFLOW_BACKEND))) store, \
	artifacts in $(MLFLOW_ARTIFACTS))"
	@echo "Point a clone at it: 'tracking.uri: http://$(HOST):$(PORT)' in params.yaml, or"
	@echo "  export MLFLOW_TRACKING_URI=http://$(HOST):$(PORT)"
	exec $(BIN)/mlflow server --backend-store-uri '$(MLFLOW_BACKEND)' \
	  --artifacts-destination '$(MLFLOW_ARTIFACTS)' --host '$(HOST)' --port '$(PORT)' \
	  --workers '$(WORKERS)'

clean:
	rm -rf data/prepared models artifacts eval metrics reports
