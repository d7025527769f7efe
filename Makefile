# Every target is self-contained: it creates/updates the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export CIFAR10_ROOT ?= $(abspath ../shared/data)

.PHONY: install test train clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed  ## create .venv and install everything

test: install  ## run the whole test suite
	$(PY) -m pytest -q

train: install  ## the main job: train the fast recipe into runs/fast
	$(PY) -m cifar_lib train --recipe fast --run-dir runs/fast

clean:
	rm -rf build runs .pytest_cache
