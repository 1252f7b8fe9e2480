# Developer entry points. `make test` is the one command that CI (.ci/run) runs.
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The suite mostly waits (worker processes, sleeps, leases, servers), so 2 pytest processes
# (pytest-xdist) halve its time on a 2-core machine. loadscope keeps a module's tests (a
# class's, for test classes) in one process, so module- and class-scoped fixtures (one
# chromium per browser module, one Celery worker per conformance class) start once.
# --no-loadscope-reorder keeps the collection order (backends/ first, see pyproject.toml):
# xdist's default puts the modules with the fewest tests last, and those are the long
# process and kill tests, which then end the run together, loading both cores at once.
# Each process has its own throwaway PostgreSQL and Redis servers. PYTEST_WORKERS=0: one.
# The reliability tests (worker processes killed, a database restarted: marker in
# pyproject.toml) run afterwards, alone: they count what happens within a time budget, and
# with the other process loading the second core they were starved (2 of 5 parallel runs
# failed one of them). A phase that selects nothing (exit 5, e.g. with -k) is not a failure.
PYTEST_WORKERS ?= 2
PYTEST := $(VENV_PY) -m pytest

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

.PHONY: venv postgres-binaries redis-binaries chromium test lint demo bench bench-quick clean

## venv: create .venv and install the package in editable mode with the dev extra
venv: $(STAMP)

# The backends under backends/ are installed editable beside the engine, in one pip call
# so that their dependency on durable-sa is met by this checkout.
BACKENDS := backends/redis backends/celery
BACKEND_PROJECTS := $(wildcard $(addsuffix /pyproject.toml,$(BACKENDS)))

# Re-installs whenever a pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml $(BACKEND_PROJECTS)
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check -e '.[dev]' \
		$(addprefix -e ,$(dir $(BACKEND_PROJECTS)))
	@touch $@

## postgres-binaries: install PostgreSQL server binaries if missing (fast no-op otherwise)
postgres-binaries:
	@bash scripts/ensure-postgres.sh

## redis-binaries: install redis-server if missing (fast no-op otherwise)
redis-binaries:
	@bash scripts/ensure-redis.sh

## chromium: install Debian's chromium and chromium-driver if missing (the dashboard's browser tests)
chromium:
	@bash scripts/ensure-chromium.sh

## test: run the test suite; it starts its own throwaway PostgreSQL and Redis servers
test: venv postgres-binaries redis-binaries chromium
	$(PYTEST) -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder \
		-m "not reliability" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PYTEST) -m reliability $(PYTEST_ARGS) || [ $$? -eq 5 ]

## bench: every benchmark scenario against the floor, DBOS and Procrastinate (~30 min on 2 cores)
bench: $(BENCH_STAMP) postgres-binaries redis-binaries
	$(VENV_PY) -m benchmarks.run $(BENCH_ARGS)

## bench-quick: the same scenarios, smaller (about 5 min)
bench-quick: $(BENCH_STAMP) postgres-binaries redis-binaries
	$(VENV_PY) -m benchmarks.run --quick $(BENCH_ARGS)

# The peers are installed only for benchmarks, never by `make test`.
$(BENCH_STAMP): $(STAMP)
	$(VENV_PY) -m pip install --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

## lint: ruff (lint + format check), mypy and the import-linter contracts (layers, pure core, no cycles)
lint: venv
	$(VENV)/bin/ruff check durable_sa backends benchmarks examples tests
	$(VENV)/bin/ruff format --check durable_sa backends benchmarks examples tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

## demo: run the demo (installs the package alone: SQLite needs no driver, no dev tools)
DEMO_STAMP := $(VENV)/.demo-installed
$(DEMO_STAMP): pyproject.toml
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check -e .
	@touch $@

demo: $(DEMO_STAMP)
	$(VENV_PY) -m examples.demo

## clean: remove the virtualenv, caches and build output
clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name '__pycache__' -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
