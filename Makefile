# build_h3wb: `make run` sets up and builds the default synthetic dataset; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup openpifpaf run test lint bench clean

# the project with its extras (PyTorch, MediaPipe, test tools, Slurm launcher): pip only, no compiler needed
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,openpifpaf,mediapipe,slurm]"
	touch $@

# OpenPifPaf compiled against the installed torch (needs a C++20 compiler once; the wheel is cached, see the script)
openpifpaf: $(VENV)/.openpifpaf

$(VENV)/.openpifpaf: $(VENV)/.installed scripts/install_openpifpaf.sh
	scripts/install_openpifpaf.sh $(PY)
	touch $@

run: setup
	$(PY) -m build_h3wb stage=all

lint: setup
	$(PY) -m ruff check build_h3wb tests benchmarks scripts

test: setup openpifpaf lint
	$(PY) -m pytest -q

bench: setup openpifpaf
	$(PY) -m pip install --quiet -e ".[test,openpifpaf,mediapipe,slurm,bench]"
	$(PY) benchmarks/bench_triangulation.py
	$(PY) benchmarks/bench_scaling.py --repeats 2 --json benchmarks/results/scaling.json
	$(PY) benchmarks/bench_detect.py --frames 10 --json benchmarks/results/detect.json

clean:
	rm -rf outputs multirun
