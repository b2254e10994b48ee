# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run cluster test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/hypercorn app.asgi:app --worker-class uvloop --workers 0 --bind $(HOST):$(PORT)

# The reference cluster: N processes behind HAProxy, on the local PostgreSQL and Redis
# (README "Production"). `make cluster N=3 PORT=8000`.
N ?= 3
cluster: $(VENV)/.run-installed
	$(BIN)/python scripts/cluster.py --processes $(N) --host $(HOST) --port $(PORT)

test: $(VENV)/.dev-installed
	bash scripts/test-services.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint and types: ruff's rules and format, mypy strict on the product (app/, media_relay/) and
# mypy on tests/ and bench/ (pyproject.toml's [tool.mypy] sections). CI runs it before the tests.
LINTED := app media_relay tests bench scripts
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/mypy tests bench

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench.chat_load suite

clean:
	rm -rf $(VENV) data/test-*
