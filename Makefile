# build_h3wb: `make run` sets up and builds the default synthetic dataset; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-fast lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install_openpifpaf.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,openpifpaf,mediapipe,slurm]"
	scripts/install_openpifpaf.sh $(PY)
	touch $@

run: setup
	$(PY) -m build_h3wb stage=all

lint: setup
	$(PY) -m ruff check build_h3wb tests benchmarks scripts

test: setup lint
	BUILD_H3WB_ALL_DETECTORS=1 $(PY) -m pytest -q

test-fast: setup  # the quick loop: no training, no subprocess builds (tests marked slow)
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) -m pip install --quiet -e ".[test,openpifpaf,mediapipe,slurm,bench]"
	$(PY) benchmarks/bench_triangulation.py
	$(PY) benchmarks/bench_scaling.py --repeats 2 --json benchmarks/results/scaling.json
	$(PY) benchmarks/bench_detect.py --frames 10 --json benchmarks/results/detect.json

clean:
	rm -rf outputs multirun
