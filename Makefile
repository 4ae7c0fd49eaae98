# build_h3wb: `make run` sets up and builds the default synthetic dataset; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup openpifpaf run test test-fast test-numpy2 lint bench clean

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

# everything (what CI runs): the compiled detectors must be there, then the core once more on numpy 2
test: setup openpifpaf lint
	BUILD_H3WB_ALL_DETECTORS=1 $(PY) -m pytest -q
	$(MAKE) test-numpy2

test-fast: setup  # the quick loop: no training, no subprocess builds (tests marked slow)
	$(PY) -m pytest -q -m "not slow"

# The core on numpy 2 (MediaPipe pins numpy<2, so the main environment has 1.26): numpy 2 is laid over the same
# environment and the quick loop runs without the MediaPipe tests.
test-numpy2: setup
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/numpy2 "numpy>=2,<3"
	PYTHONPATH=$(VENV)/numpy2 $(PY) -c "import numpy; assert numpy.__version__ >= '2', numpy.__version__"
	PYTHONPATH=$(VENV)/numpy2 $(PY) -m pytest -q -m "not slow" -p no:cacheprovider \
		--ignore=tests/detectors/test_mediapipe_detector.py

bench: setup openpifpaf
	$(PY) -m pip install --quiet -e ".[test,openpifpaf,mediapipe,slurm,bench]"
	$(PY) benchmarks/bench_triangulation.py
	$(PY) benchmarks/bench_scaling.py --repeats 2 --json benchmarks/results/scaling.json
	$(PY) benchmarks/bench_detect.py --frames 10 --json benchmarks/results/detect.json

clean:
	rm -rf outputs multirun
