# Two commands for a newcomer: `make demo` (set up, then run the main job) and `make test` (set up, then test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.13.0 is pinned for set-up only: on this machine pip finds its CPU build on disk instead of pulling
# gigabytes of CUDA packages. Users may install any torch that pyproject's range admits.
TORCH ?= torch==2.13.0

.PHONY: setup demo train test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

# The main job, briefly: train the cifar10_vit recipe for DEMO_MINUTES on CIFAR-10 (found under ./data,
# $$VITKIT_DATA or ../shared/data, else downloaded). The full 30-minute run: make train.
DEMO_MINUTES ?= 3
demo: setup
	$(VENV)/bin/vitkit train --config cifar10_vit --set train.max_minutes=$(DEMO_MINUTES) --set train.run_name=demo
	@echo "Trained for $(DEMO_MINUTES) minutes. The full recipe (>= 70% test top-1 in 30 minutes on 2 CPU cores): make train"

train: setup
	$(VENV)/bin/vitkit train --config cifar10_vit

# -rfs names every failure and every skip with its reason. No test depends on timing (the time budget runs on an
# injected clock, the killed runs kill themselves at drawn steps), so a failure is real: nothing is re-run. A test
# that needs part of the test extra skips without it, and tests/test_test_extra.py then fails.
test: setup
	$(PY) -m pytest -q -rfs

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

bench: setup
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
