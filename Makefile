# One-command entry points. `make test` and `make demo` set up .venv on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-stamp
# The torch pair this project is tested with; on the project's machines pip takes both from local disk.
TORCH   ?= torch==2.14.1 torchvision==0.29.1
# one pytest-xdist worker per core (a worker computes on one thread: tests/conftest.py);
# `make test PYTEST_ARGS="-n 0"` runs in one process
PYTEST_ARGS ?= -n auto --dist worksteal

.PHONY: setup test test-fast demo demo-ddp sweep lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev,clip,slurm,lora]"
	$(BIN)/python -m pip install --quiet --no-deps "netcal>=1.3"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(BIN)/calib-run

demo-ddp: setup
	$(BIN)/torchrun --standalone --nproc_per_node 2 -m calib.experiments.run device=cpu

sweep: setup
	$(BIN)/calib-run -m optimizer=sgd,adam,adamw,adabelief,adadelta,adagrad,rmsprop

lint: setup
	$(BIN)/ruff check calib experiments tests benchmarks
	$(BIN)/ruff format --check calib experiments tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_curve.py
	$(BIN)/python benchmarks/bench_calibrators.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_extract.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .hypothesis
