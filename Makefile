# Two entry points: `make demo` (the main job) and `make test`. Both create or reuse .venv.
# torch is installed first, pinned to the local CPU build, so pip never pulls CUDA packages.
VENV := .venv
PYTHON := $(VENV)/bin/python
export OMP_WAIT_POLICY := PASSIVE

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $@

.PHONY: demo test lint
demo: $(VENV)/.installed
	$(VENV)/bin/ocrheads demo --out runs/demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(PYTHON) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
