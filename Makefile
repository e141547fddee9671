# tinyir: two commands for a newcomer.
#   make course   set up .venv (if needed), build the dataset, start JupyterLab on notebooks/
#   make test     set up .venv (if needed), build the dataset, run the whole test suite
# Other targets: make data, make test-1thread, make test-gpu, make bench, make lint,
# make clean-venv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tinyir-installed
# Tests and notebooks must never reach a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Fewer progress-bar refreshes: a flood of widget messages can outrun nbval's 5 s output wait.
export TQDM_MININTERVAL := 1

.PHONY: install data course test test-1thread test-fast test-notebooks test-gpu bench lint clean-venv

install: $(STAMP)

# The venv is (re)installed whenever the pins or the package metadata change.
$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "tinyir needs Python 3.11 (requirements.lock is pinned for it); found " + sys.version.split()[0] + ". Run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# Builds data/pydocs from the installed libraries' docstrings, or validates it (sha256 of every
# file against its manifest) and rebuilds with the reason when it is stale.
data: $(STAMP)
	$(BIN)/tinyir data build

course: data
	$(BIN)/jupyter lab notebooks/

# Unit, oracle and grading tests, then every lesson and solution notebook under nbval (each in a
# fresh kernel, with its time budget checked by conftest.py); then the unit and grading tests
# again on one thread (test-1thread).
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=600
test: data
	$(BIN)/python -m pytest tests notebooks solutions $(NBVAL)
	$(MAKE) --no-print-directory test-1thread

# A second configuration: one BLAS/OpenMP thread sums in another order than two, so every float
# check between code paths must hold under both (the tolerance rule in tinyir/testing.py).
# The slow tests (full dataset rebuild, graded notebook runs) are left to the first pass.
test-1thread: data
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest tests -m "not slow" -p no:cacheprovider

test-fast: data
	$(BIN)/python -m pytest tests -m "not slow"

test-notebooks: data
	$(BIN)/python -m pytest notebooks solutions $(NBVAL)

test-gpu: data
	$(BIN)/python -m pytest tests -m cuda -v

bench: data
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check tinyir tests benchmarks

clean-venv:
	rm -rf $(VENV)
