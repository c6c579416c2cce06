# Two commands for a newcomer: `make demo` (set up, then run the main job) and `make test` (set up, then test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.13.0 is pinned for set-up only: on this machine pip finds its CPU build on disk instead of pulling
# gigabytes of CUDA packages. Users may install any torch that pyproject's range admits.
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

bench: setup
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
