# Plain entry points. `make test` works on a fresh machine with only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-backends lint clean

# --no-compile: Python compiles the modules a program imports when it first imports them,
# instead of pip compiling every file of TensorFlow, PyTorch and JAX up front (a fresh
# install here: 116 s -> 53 s).
# `make demo` installs what the library needs (requirements.txt: TensorFlow on the CPU);
# `make test` adds the tests' set: PyTorch's CPU build from PyTorch's index (asked for
# torch only, at most twice: a machine that cannot reach it and holds the wheel goes on),
# then requirements-dev.txt.
$(RUNTIME): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	touch $(RUNTIME)

$(STAMP): $(RUNTIME) requirements-dev.txt requirements-torch-cpu.txt
	$(BIN)/python -m pip install --quiet --no-compile --retries 1 -r requirements-torch-cpu.txt
	$(BIN)/python -m pip install --quiet --no-compile -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# The whole method on synthetic videos, CPU only: writes evaluation/results/demo/.
demo: $(RUNTIME)
	KERAS_BACKEND=tensorflow $(BIN)/python -m evaluation.demo

# The whole suite on TensorFlow (default backend), then the model tests on JAX and PyTorch
# and the device flow solver's end-to-end tests on JAX (marked `jax`, skipped on the others),
# each spread over the machine's cores (pytest-xdist; at most 4 processes, one test file
# per process so that a file's shared fixtures are computed once).
PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest $(PARALLEL)
	$(MAKE) --no-print-directory test-backends

# Only the test files that hold such tests are collected (collecting all of them imports
# every module of the project in each worker).
MARKED = $(shell grep -l -E "mark\.(multibackend|jax)\b" tests/test_*.py)
test-backends: $(STAMP)
	KERAS_BACKEND=jax $(BIN)/python -m pytest $(PARALLEL) -m "multibackend or jax" $(MARKED)
	KERAS_BACKEND=torch $(BIN)/python -m pytest $(PARALLEL) -m multibackend $(MARKED)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
