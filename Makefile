# Two commands for a new user, each doing its own set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned so that pip never resolves a newer torch (several GB of CUDA packages) on CPU machines.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint format docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The main job: train the character LM on Shakespeare (DEMO_BUDGET, default 3m), print a sample.
DEMO_BUDGET ?= 3m
demo: $(STAMP)
	$(BIN)/python examples/demo.py --time-budget $(DEMO_BUDGET)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# API reference from the docstrings into build/api (index.html); warnings are errors. -E: read
# every page afresh, or a rerun after a failed build would pass with the old warnings unseen.
docs: $(STAMP)
	$(BIN)/python -m sphinx -E -W --keep-going -q -b html docs/api build/api

test: lint docs
	$(BIN)/python -m pytest -n 2 --dist loadfile -rs

bench: $(STAMP)
	$(BIN)/rnnlab bench

clean:
	rm -rf $(VENV) build *.egg-info
