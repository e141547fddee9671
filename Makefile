# tinyir: two commands for a newcomer.
#   make course   set up .venv (if needed), build the dataset, start JupyterLab on notebooks/
#   make test     set up .venv (if needed), build the dataset, run the whole test suite
# Other targets: make book, make data, make test-1thread, make test-gpu, make test-browser,
# make bench, make bench-gpu, make checkpoints, make measure, make grader-image, make lint, make clean-venv.

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

.PHONY: install data course book system-deps test test-1thread test-fast test-notebooks test-gpu \
        test-browser bench bench-gpu checkpoints measure grader-image lint clean-venv

install: $(STAMP)

# Triton (the fused MaxSim kernel, tinyir/maxsim_triton.py; its tests run it in Triton's
# interpreter on the CPU) ships for Linux only, so it is pinned here rather than in
# requirements.lock, which macOS and Windows install too. torch goes in the same command, at the
# lock's version, so pip never trades the installed torch for another build.
TRITON_PIN := triton==3.9.0

# The venv is (re)installed whenever the pins or the package metadata change.
$(STAMP): requirements.lock pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "tinyir needs Python 3.11 (requirements.lock is pinned for it); found " + sys.version.split()[0] + ". Run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@if [ "$$(uname -s)" = Linux ]; then $(BIN)/python -m pip install --quiet --disable-pip-version-check "$$(grep '^torch==' requirements.lock)" "$(TRITON_PIN)"; fi
	@touch $(STAMP)

# Builds data/pydocs from the installed libraries' docstrings, or validates it (sha256 of every
# file against its manifest) and rebuilds with the reason when it is stale.
data: $(STAMP)
	$(BIN)/tinyir data build

course: data
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# The reader's edition: build/book/index.html, a static site of the executed course (offline,
# no scripts). It publishes the copies `make test` executed (build/executed/) and executes only
# the notebooks whose copy is missing, failed or older than the notebook.
book: data
	$(BIN)/python -m tinyir.course.book

# Debian packages some tests need: bubblewrap (the grading sandbox) and chromium (the quiz's
# real-browser test). Installed when missing and run as root (as CI is); elsewhere those tests
# skip, and pytest's summary says which command installs them.
APT_INSTALL = apt-get install -y -qq $(1) >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $(1) >/dev/null 2>&1)
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { $(call APT_INSTALL,bubblewrap); }; } || echo "note: bubblewrap is missing; the grading sandbox tests will skip (apt-get install bubblewrap)"
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { $(call APT_INSTALL,chromium); }; } || echo "note: chromium is missing; the browser tests will skip (apt-get install chromium)"

# Tests keep their quiz scores away from the student's own (~/.tinyir/progress.json).
test test-1thread test-fast test-notebooks test-browser: export TINYIR_HOME := $(CURDIR)/.tinyir/test-home

# Unit, oracle and grading tests, then every lesson and solution notebook under nbval (each in a
# fresh kernel, with its time budget checked by conftest.py, its executed copy kept in
# build/executed/), then the book built from those copies, checked in Chromium; then the unit and
# grading tests again on one thread (test-1thread).
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=600
test: data system-deps
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

# On a CUDA machine: encode, MaxSim (fused, chunked, plain) and exact search on the GPU, saved
# as one JSON object under benchmarks/results/ (a few minutes).
bench-gpu: data
	$(BIN)/python benchmarks/gpu.py

bench: data
	$(BIN)/python benchmarks/run_all.py
	$(BIN)/python benchmarks/grading.py
	$(BIN)/python benchmarks/gradcache.py

# The course's trained models (tinyir/course/checkpoints/): retrain each by its recipe, score it,
# pack it (README: how long on a CPU and a GPU). Then measure every system on the test split
# with them (results.json, which the lessons read).
checkpoints: data
	$(BIN)/python -m tinyir.course.checkpoints build

measure: data
	$(BIN)/python -m tinyir.course.measure

# The real-browser test of the quizzes alone (it also runs in make test).
test-browser: data system-deps
	$(BIN)/python -m pytest -m browser tests

# The grading container (docs/instructors.md, "Grading at scale"); needs a Docker engine.
grader-image:
	docker build -t tinyir-grader .

lint: $(STAMP)
	$(BIN)/ruff check tinyir tests benchmarks tools

clean-venv:
	rm -rf $(VENV)
