# Two entry points: `make demo` (the main job) and `make test`. Both create or reuse .venv, installed from the lock
# (requirements.lock: every package version the suite last passed with), so a fresh clone installs what was tested
# whatever has been released since. torch is installed first, pinned to the local CPU build, so pip never pulls
# CUDA packages.
VENV := .venv
PYTHON := $(VENV)/bin/python
LOCK := requirements.lock
export OMP_WAIT_POLICY := PASSIVE

$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv --clear $(VENV)
	$(PYTHON) -m pip install --quiet -c $(LOCK) torch==2.13.0
	$(PYTHON) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $@

.PHONY: demo test lint lock test-compat mutation
demo: $(VENV)/.installed
	$(VENV)/bin/ocrheads demo --out runs/demo

# Two worker processes, whole files each (module fixtures are built once): the suite is single-threaded at heart.
test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(PYTHON) -m pytest -n 2 --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The newest releases pyproject.toml admits, in a throwaway venv; requirements.lock is rewritten only if the whole
# suite passes there (about 15 minutes).
lock:
	bash scripts/versions.sh lock

# The version-sensitive tests under the oldest transformers ocrheads claims and under the newest release (about
# 12 minutes; not in .ci/run, which installs from the lock: run it before every landing).
test-compat:
	bash scripts/versions.sh compat

# Mutation testing of the core modules, each against its own tests (cosmic-ray; hours for all of them on two
# cores, so not in .ci/run): `make mutation`, or `bash scripts/mutation.sh metrics alignment` for some.
mutation:
	bash scripts/mutation.sh
