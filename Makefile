# Semantic Segmentation Labs — every set-up and test step. `make help` lists the targets.
# Two commands do everything on a fresh machine:  make lab   (set up and open the labs)
#                                                 make test  (set up and run every test)
SHELL := /bin/bash
comma := ,
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP_ARGS ?=
ARGS ?=
PYTEST_ARGS ?=
JOBS ?= 2
# Run grading commands with the venv first on PATH: nbgrader calls `alembic`, Jupyter finds the venv's kernel.
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND ?= Agg
# The browser tests drive Debian's Chromium (never Playwright's own download).
CHROMIUM ?= /usr/bin/chromium
# `course grade` runs every kernel in bubblewrap (Debian's package), installed through apt-get when missing.
BWRAP ?= /usr/bin/bwrap

.DEFAULT_GOAL := help
.PHONY: help install install-bwrap lab kernel labs test test-full test-fast test-ui lint format bench gpu-check release-ids clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  Variables: ARGS (passed to jupyter lab, e.g. ARGS=--no-browser), PYTEST_ARGS, JOBS (parallel workers, default 2),"
	@echo "             PIP_ARGS (e.g. PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu' for a CPU-only torch)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when the dependency lists change. Students (`make lab`) get the runtime and JupyterLab (the
# `lab` extra); maintainers and CI (`make install`, `make test`) everything (`dev` = lab + grading + test tools).
$(VENV)/.stamp-lab: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[lab]' $(PIP_ARGS)
	touch $@

$(VENV)/.stamp-install: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' $(PIP_ARGS)
	touch $@ $(VENV)/.stamp-lab

install: $(VENV)/.stamp-install ## create .venv and install the course with the tested pins

kernel: $(VENV)/.stamp-lab ## register the .venv as a Jupyter kernel "Python (seglabs)" for other Jupyter installs
	$(PY) -m ipykernel install --user --name seglabs --display-name "Python (seglabs)"

lab: $(VENV)/.stamp-lab kernel ## students: install runtime + JupyterLab, open labs/ (headless: ARGS=--no-browser)
	$(BIN)/jupyter lab --ServerApp.root_dir=labs $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

labs: install ## regenerate labs/ (student versions) from solutions/: the guarded `course release`
	$(BIN)/course release

release-ids: ## record the grade_ids of all labs as released (run once when releasing; see README)
	$(PY) -m seglabs_grading.cells --write-release-ids tests/grade_ids.json

lint: install ## ruff: lint Python files and notebooks
	$(BIN)/ruff check .

format: install ## ruff: format the Python files (not the notebooks)
	$(BIN)/ruff format .

# The solutions run under nbval in a student's kernel: the Jupyter server and the grading packages cannot be
# imported there (tests/student_kernel/sitecustomize.py), as on Colab or a JupyterHub image.
STUDENT_KERNEL := SEGLAB_BLOCK_IMPORTS=nbgrader,jupyterlab,jupyter_server,notebook PYTHONPATH=$(CURDIR)/tests/student_kernel

# Tests run one torch thread per process: two workers on two cores with default threads thrash (about 10x slower).
test: install $(CHROMIUM) $(BWRAP) ## set up, then run every test with the small CI budget (under 15 min on 2 cores)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SEGLAB_BUDGET=ci OMP_NUM_THREADS=1 $(BIN)/pytest -n $(JOBS) --dist loadgroup tests --durations=15 $(PYTEST_ARGS)
	SEGLAB_BUDGET=ci OMP_NUM_THREADS=1 $(STUDENT_KERNEL) $(BIN)/pytest -n $(JOBS) --dist loadfile solutions \
	  --nbval-lax --nbval-current-env $(PYTEST_ARGS)

test-fast: install ## unit tests and static checks only (no notebooks, no grading)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SEGLAB_BUDGET=ci OMP_NUM_THREADS=1 $(BIN)/pytest -n $(JOBS) -m "not slow and not ui" tests $(PYTEST_ARGS)

test-ui: install $(CHROMIUM) ## the labs and solutions in JupyterLab in headless Chromium (screenshots/)
	SEGLAB_BUDGET=ci SEGLAB_UI_SOLUTIONS=1 OMP_NUM_THREADS=1 $(BIN)/pytest -m ui tests/ui $(PYTEST_ARGS)

# $(call apt_install,PACKAGE,WHAT FOR,HOW TO INSTALL IT BY HAND): as root with apt-get, install Debian's PACKAGE;
# otherwise say what it is for and how to get it, and fail.
define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(1) $(2) (apt-get install $(1))"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	else \
	  echo "$(3)"; \
	  echo "make test-fast runs everything else."; \
	  exit 1; \
	fi
endef

# Debian's Chromium for the browser tests and bubblewrap for the grading sandbox, installed when missing.
$(CHROMIUM):
	$(call apt_install,chromium,for the browser tests,The browser tests need Chromium at $(CHROMIUM). Install it (Debian/Ubuntu: sudo apt-get install chromium) or point to one: make test CHROMIUM=/path/to/chromium.)

$(BWRAP):
	$(call apt_install,bubblewrap,for the grading sandbox,Grading runs every kernel in bubblewrap at $(BWRAP). Install it (Debian/Ubuntu: sudo apt-get install bubblewrap$(comma) Fedora: sudo dnf install bubblewrap) or point to one: make test BWRAP=/path/to/bwrap.)

install-bwrap: $(BWRAP) ## install bubblewrap, the sandbox `course grade` runs kernels in (as root: apt-get)

test-full: install $(CHROMIUM) $(BWRAP) ## every test with the students' real training budgets (slow)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SEGLAB_BUDGET=full SEGLAB_CELL_TIMEOUT=1800 SEGLAB_TEST_ALL_STUBS=1 SEGLAB_UI_SOLUTIONS=1 OMP_NUM_THREADS=1 $(BIN)/pytest -n $(JOBS) --dist loadgroup tests $(PYTEST_ARGS)
	SEGLAB_BUDGET=full OMP_NUM_THREADS=1 $(STUDENT_KERNEL) $(BIN)/pytest -n $(JOBS) --dist loadfile solutions \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 $(PYTEST_ARGS)

# No install step: the lent GPU machine has torch but no venv, Jupyter or nbgrader (see benchmarks/gpu_check.py).
gpu-check: ## on a GPU: lab 04's graded run with AMP, images/s, transposed conv (CPU dry run without CUDA)
	$(or $(wildcard $(PY)),$(PYTHON)) -m benchmarks.gpu_check $(ARGS)

bench: install ## run the benchmarks (prints ratios against their references)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) -m benchmarks.$$(basename $$b .py) || exit 1; done

clean: ## remove generated data, grading folders and caches (keeps .venv)
	rm -rf grading data/scenes* .pytest_cache .ruff_cache screenshots
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
