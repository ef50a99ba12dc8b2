# The two entry points: `make run` starts the host, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest clean bench image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Isolation where it can be had: with an engine reachable the agent image is built (or found
# current) first, each step timed; without one build_image.sh says, in one line, that agents
# run as processes, unisolated, and why. It never installs or starts an engine, and never fails.
run: $(STAMP)
	@scripts/build_image.sh --for-run
	$(BIN)/hutch run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# ensure_docker.sh starts an engine and builds the agent image where it can (always exits 0);
# without one, the Docker tests skip and say why.
pytest: $(STAMP)
	scripts/ensure_docker.sh
	scripts/ensure_chromium.sh
	$(BIN)/python -m pytest

# The agent image, from local sources only (no registry): each step and its time.
image: $(STAMP)
	scripts/build_image.sh

test: lint typecheck pytest

# bench_host.py includes bench_roundtrip.py's rows and writes bench-results/bench.{json,png};
# `make bench BENCH_ARGS=--quick` for a smoke run. ensure_docker.sh (always exits 0) makes
# the Docker rows possible; without an engine they are skipped with the reason.
BENCH_ARGS ?=
bench: $(STAMP)
	scripts/ensure_docker.sh
	$(BIN)/python scripts/bench_session_db.py
	$(BIN)/python scripts/bench_host.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
