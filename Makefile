# Every target is self-contained: it creates/updates the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Notebook parameters from the command line, e.g. `make run-notebooks EPOCHS=1 RECIPE=original`;
# any other parameter with PARAMS="-p NAME VALUE ...".
NB_VARS := RUN_DIR RECIPE MODEL EPOCHS BATCH_SIZE LR SEED DEVICE QUICK KEEP_ON_DRIVE IF_MISSING
NB_PARAMS := $(foreach v,$(NB_VARS),$(if $($(v)),-p $(shell echo $(v) | tr A-Z a-z) $($(v)))) $(PARAMS)
GRID ?= lr=0.5,1.5 epochs=1,2
SWEEP_OUT ?= build/sweep
# The package with the extras the tests and lessons need, at the exact versions CI passed with
# (constraints.txt); a user's `pip install` keeps pyproject's ranges.
EXTRAS ?= course,test,demo,export
CONSTRAINTS ?= constraints.txt
# Extra options for train, e.g. `make train TRAIN_ARGS=--resume` after an interruption, or
# TRAIN_ARGS=--overwrite to train runs/fast anew.
TRAIN_ARGS ?=
# Extra options for a benchmark, e.g. `make bench-train BENCH_ARGS=--resume` after an interruption.
BENCH_ARGS ?=
# The run folder bench-inference times: by default the fast model shipped with cifar_lib.
BENCH_RUN ?= cifar_lib/pretrained_runs/fast

.PHONY: install constraints test train run-notebooks sweep sync bench-data bench-train bench-time-to-64 \
	bench-inference bench-throughput bench-ablation bench-breakdown bench-open-set \
	bench-report bench-robustness clean help

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed  ## create .venv: the package, its extras EXTRAS, pinned by CONSTRAINTS

# Maintainers, after `make test` passed in a fresh .venv with new versions: pin them.
constraints: install  ## write what .venv holds into CONSTRAINTS
	{ echo "# The exact versions make test passed with (pip freeze of a fresh .venv, minus"; \
	  echo "# cifar_lib). CI and make install use them; users keep pyproject's ranges."; \
	  $(PY) -m pip freeze --all --exclude-editable | grep -v -i '^cifar[_-]lib'; } > $(CONSTRAINTS)

# One worker per logical CPU (pytest-xdist); a file's tests stay together, so that a module's
# fixtures (the Colab run of the lessons, the torchrun jobs) are made once.
test: install  ## the whole test suite (what CI runs)
	$(PY) -m pytest -q --durations=10 -n logical --dist loadfile

train: install  ## the main job: train the fast recipe into runs/fast, calibrated
	$(PY) -m cifar_lib train --recipe fast --run-dir runs/fast --download $(TRAIN_ARGS)

run-notebooks: install  ## run the four notebooks in order with papermill into build/notebooks
	$(PY) -m cifar_lib run-notebooks --out build/notebooks $(NB_PARAMS)

sweep: install  ## papermill sweep of 01_train over GRID="name=v1,v2 ..." into SWEEP_OUT
	$(PY) -m cifar_lib sweep --out $(SWEEP_OUT) --grid $(GRID) $(NB_PARAMS)

sync: install  ## regenerate each .ipynb from its .py, keeping the outputs (and the .py's cell tags)
	$(PY) tools/sync_notebooks.py

bench-data: install  ## data pipeline: ours vs torchvision DataLoader (JSON in benchmarks/results)
	$(PY) -m cifar_lib bench data

bench-train: install  ## the fast recipe vs the airbench94 anchor, 5 seeds each, time ratio
	$(PY) -m cifar_lib bench train $(BENCH_ARGS)

bench-time-to-64: install  ## race64 vs the original notebook's pipeline to 64%, 3 seeds each (minutes)
	$(PY) -m cifar_lib bench time-to-64 $(BENCH_ARGS)

bench-inference: install  ## inference throughput/latency by batch size, CPU and GPU (BENCH_RUN=run folder)
	$(PY) -m cifar_lib bench inference --run-dir $(BENCH_RUN) --out benchmarks/results/inference.json

bench-throughput: install  ## training images/s of both recipes, CPU and each GPU, with the speed-up
	$(PY) -m cifar_lib bench throughput

bench-ablation: install  ## fast with each trick removed in turn, 3 seeds, full budget (hours on a CPU)
	$(PY) -m cifar_lib bench ablation $(BENCH_ARGS)

bench-breakdown: install  ## where a training step's time goes (torch.profiler), fast and airbench94
	$(PY) -m cifar_lib bench breakdown

bench-open-set: install  ## "none of these": four scores against unknown images, by AUROC
	$(PY) -m cifar_lib bench open-set

bench-report: install  ## rebuild the result tables in README.md and benchmarks/README.md
	$(PY) -m cifar_lib bench report

bench-robustness: install  ## accuracy under 10 corruptions × 5 severities, shipped fast vs original
	$(PY) -m cifar_lib bench robustness

clean:  ## delete build/, runs/ and notebooks/runs/
	rm -rf build runs notebooks/runs .pytest_cache

help:  ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) \
		| sed -E 's/^([a-z0-9-]+):.*## /  \1\t/' | expand -t 20
