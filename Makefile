# build_h3wb: `make run` sets up and builds the default synthetic dataset; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup openpifpaf run test test-fast test-numpy2 lint bench clean

# Optional: the PyTorch build to install before the rest (empty: the one pip picks from PyPI for pyproject's range,
# on Linux a CUDA build with about 4 GB of CUDA libraries, which also runs on a CPU). For a CPU-only machine:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu   (PyTorch's CPU wheels, torch and torchvision)
#   make setup TORCH=torch==2.13.0                                 (a release pip finds in its --find-links folders)
TORCH ?=
TORCH_INDEX ?=

# the project with its extras (PyTorch, MediaPipe, test tools, Slurm launcher): pip only, no compiler needed
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) "$(or $(TORCH),torch)" torchvision)
	$(if $(and $(TORCH),$(if $(TORCH_INDEX),,1)),$(PY) -m pip install --quiet "$(TORCH)")
	$(PY) -m pip list --format=freeze | grep -E '^(torch|torchvision)==' > $(VENV)/torch-constraints.txt || true
	$(PY) -m pip install --quiet -e ".[test,openpifpaf,mediapipe,slurm]" -c $(VENV)/torch-constraints.txt
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
# environment and the quick loop runs without the MediaPipe tests. The newest numpy 2 that numba (a core
# dependency) supports: with a newer one numba does not import and the triangulation falls back to numpy.
test-numpy2: setup
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/numpy2 "numpy>=2,<2.6"
	PYTHONPATH=$(VENV)/numpy2 $(PY) -c "import numpy; assert numpy.__version__ >= '2', numpy.__version__"
	PYTHONPATH=$(VENV)/numpy2 $(PY) -m pytest -q -m "not slow" -p no:cacheprovider \
		--ignore=tests/detectors/test_mediapipe_detector.py

bench: setup openpifpaf
	$(PY) -m pip install --quiet -e ".[test,openpifpaf,mediapipe,slurm,bench]" $(if $(wildcard $(VENV)/torch-constraints.txt),-c $(VENV)/torch-constraints.txt)
	$(PY) benchmarks/bench_triangulation.py
	$(PY) benchmarks/bench_scaling.py --repeats 2 --json benchmarks/results/scaling.json
	$(PY) benchmarks/bench_detect.py --frames 10 --json benchmarks/results/detect.json

clean:
	rm -rf outputs multirun
