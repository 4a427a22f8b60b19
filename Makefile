# The README's two commands are `make demo` and `make test`; CI runs `make test`.
# Every target sets up what it needs first; set-up steps are cached by stamp files
# and rerun only when their requirements change.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
AWQ_VENV := .venv-awq
MODELS := models
TINY := $(MODELS)/tiny
SMOLLM2 := $(MODELS)/smollm2

.PHONY: setup demo test test-fast mutate lint bench replay quality clean models
setup: $(VENV)/.stamp $(ENGINE_VENV)/.stamp

$(VENV)/.stamp: requirements.txt requirements-dev.txt requirements-tools.txt requirements-builder.txt
	[ -x $(VENV)/bin/python ] || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt
	touch $@

$(ENGINE_VENV)/.stamp: requirements-engine.txt scripts/setup_engine.sh
	scripts/setup_engine.sh $(ENGINE_VENV) requirements-engine.txt
	touch $@

$(AWQ_VENV)/.stamp: requirements-awq.txt scripts/setup_awq.sh
	scripts/setup_awq.sh $(AWQ_VENV) requirements-awq.txt
	touch $@

$(TINY)/config.json: $(ENGINE_VENV)/.stamp builder/tiny_model.py
	$(ENGINE_VENV)/bin/python -m builder tiny-model $(TINY)

$(SMOLLM2)/manifest.json: $(ENGINE_VENV)/.stamp
	$(ENGINE_VENV)/bin/python -m builder fetch smollm2 --out $(SMOLLM2)

models: $(TINY)/config.json $(SMOLLM2)/manifest.json

# The demo prices worker seconds as an RTX 4090 (from core/data/prices.json), so answers show cost_usd.
DEMO_GPU_TYPE ?= NVIDIA GeForce RTX 4090
demo: setup models
	GPU_TYPE="$${GPU_TYPE:-$(DEMO_GPU_TYPE)}" $(VENV)/bin/python -m handler.samples sample_jobs

test: setup models $(AWQ_VENV)/.stamp
	scripts/ensure_redis.sh
	FRUGAL_STRICT=1 $(VENV)/bin/python -m pytest

# Everyday work: no engine, no model that needs one, nothing marked slow (under 2 minutes on 2 cores).
# Tests whose prerequisites are not built are skipped (no FRUGAL_STRICT); make test runs them all.
FAST_TESTS := not engine and not realmodel and not awq and not slow
test-fast: $(VENV)/.stamp
	scripts/ensure_redis.sh
	$(VENV)/bin/python -m pytest -m "$(FAST_TESTS)"

# Mutation testing of the money and cache-key modules (pyproject.toml's [tool.mutmut]): each mutant
# against the fast tests that run its function, in a copy under mutants/. About 5 minutes on 2 cores;
# `mutmut show <name>` prints a survivor's change.
mutate: $(VENV)/.stamp
	scripts/ensure_redis.sh
	rm -rf mutants
	$(VENV)/bin/mutmut run
	$(VENV)/bin/mutmut results

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup models
	$(VENV)/bin/python -m bench

replay: setup models
	scripts/ensure_redis.sh
	$(VENV)/bin/python -m bench replay

quality: setup models $(AWQ_VENV)/.stamp
	$(VENV)/bin/python -m builder quantize $(SMOLLM2) --out $(MODELS)/smollm2-awq --group-size 64

clean:
	rm -rf $(VENV) $(ENGINE_VENV) $(AWQ_VENV) $(MODELS) .cache
