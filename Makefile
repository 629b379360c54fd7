# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC picks the torch build. The default is the CPU wheel these machines carry; elsewhere, install the
# torch build you want first (see README) and run `make TORCH_SPEC= test`, or pass your own spec.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.snapkit-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test lint fmt clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so that nothing after it can pull a multi-GB CUDA build.
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m snapkit demo --out $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/ruff check snapkit tests experiments
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check snapkit tests experiments
	$(BIN)/ruff format --check snapkit tests experiments

fmt: $(STAMP)
	$(BIN)/ruff check --fix snapkit tests experiments
	$(BIN)/ruff format snapkit tests experiments

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
