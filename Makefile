# One entry point for users and CI. `make test` works from a fresh clone: it creates .venv,
# installs the package with its dev extras, then runs lint, format check, type check and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest bench clean podman base-image demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check soundsright_async tests benchmarks
	$(BIN)/ruff format --check soundsright_async tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy soundsright_async

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/metrics_throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Podman for the sandbox (tests, CI, a one-machine validator): installs podman + runc with apt
# when missing, writes a project-local containers.conf and starts the API socket; prints
# `export DOCKER_HOST=unix://...` (use: eval "$$(make -s podman)").
podman:
	@scripts/podman.sh

# The offline images (mmdebstrap + podman import; kept if they exist, FORCE=1 rebuilds): the
# base image the example models build FROM and the buildah image every build runs inside.
base-image: podman $(STAMP)
	@scripts/base-image.sh

# The whole subnet on this machine: a localnet with 1 s blocks, one validator and four miner
# daemons (the three example models and DeepFilterNet3, committed to a local git hub), one short
# epoch; progress, then the leaderboard and the weights on chain. Everything it starts is stopped
# on exit or Ctrl-C. Options: make demo DEMO_ARGS="--miners 5 --keep-running" (soundsright demo -h).
DEMO_ARGS ?=
demo: base-image
	@eval "$$(scripts/podman.sh)" && $(BIN)/soundsright demo $(DEMO_ARGS)
