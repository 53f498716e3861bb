# One task runner for everything; CI (.ci/run) calls the same targets. `make` alone lists them.
# Plain pip and venv underneath: each recipe is a command a newcomer could type by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := skillbank sandbox tests benchmarks
# Extra pytest arguments, e.g. `make test-fast ARGS=tests/sandbox` or `ARGS="-k gate -x"`.
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install fmt lint type test test-fast gate bench check

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Make .venv and install skillbank editable with the test and dev extras
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,dev]'
	@# PostgreSQL's server binaries for the shared-ledger tests: installed with apt-get when
	@# root (CI); elsewhere those tests skip, saying so, unless TEST_SERVERS_REQUIRED=1.
	@.ci/servers || echo "note: no PostgreSQL server binaries; the shared-ledger tests will skip"

fmt: ## Format the code and apply ruff's safe fixes
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

lint: ## Lint and check formatting, changing nothing (ruff)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

type: ## Type-check skillbank and sandbox strictly (mypy; see [tool.mypy])
	$(BIN)/mypy

test: ## Run every test, the slow ones too (what CI runs; under CI=... a missing server fails)
	TEST_SERVERS_REQUIRED=$${TEST_SERVERS_REQUIRED:-$${CI:+1}} $(BIN)/python -m pytest $(ARGS)

test-fast: ## The inner loop: every test except those marked slow
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

gate: ## Check this repository's own skills (replay, properties, tools)
	$(BIN)/skillbank gate

bench: ## Quick runs of the benchmarks (a few minutes; full runs: benchmarks/README.md)
	@# savings_bench counts tokens with tiktoken and bpe-openai's offline BPE: the bench extra
	$(BIN)/python -c "import tiktoken" 2>/dev/null || $(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/sandbox_bench.py --quick --skip-smolagents
	$(BIN)/python benchmarks/search_bench.py --quick
	$(BIN)/python benchmarks/learning_bench.py --quick
	$(BIN)/python benchmarks/savings_bench.py --only shop

check: lint type test gate ## Everything CI checks: lint, type, test, gate
