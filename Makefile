# `make demo` and `make test` set everything up (.venv, the build) and run; see README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: all build demo test test-pythons docs bench test-asan clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

# Build tools first, then the package (editable, so the tests run against this tree) with its extras.
# The editable install compiles nothing (RUSTOGRAD_NO_EXTENSIONS): `build` compiles, once.
$(INSTALLED): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet "setuptools>=77" "Cython>=3" "numpy>=1.23"
	RUSTOGRAD_NO_EXTENSIONS=1 $(PY) -m pip install --quiet --no-build-isolation -e ".[test,bench,examples,dask]"
	touch $@

# Recompiles only what changed since the last build.
build: $(INSTALLED)
	$(PY) setup.py --quiet build_ext --inplace

demo: build
	mkdir -p out
	$(PY) examples/run_all.py

test: build
	$(PY) -m pytest tests

# The suite on each CPython of PYTHONS (pyenv's, or pythonX.Y on PATH), each in its own .venv-X.Y with
# the package installed from this tree's sdist with build isolation, as a user gets it.
PYTHONS ?= 3.9 3.10 3.11 3.12 3.13
test-pythons: $(INSTALLED)
	bash .ci/test-pythons $(PYTHONS)

# The HTML reference (every public name, from the docstrings) and the guide pages of docs/, into
# docs/_build/html; Sphinx warnings are errors.
docs: build $(VENV)/.docs-installed
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

$(VENV)/.docs-installed: $(INSTALLED)
	RUSTOGRAD_NO_EXTENSIONS=1 $(PY) -m pip install --quiet --no-build-isolation -e ".[docs]"
	touch $@

# Three tables: the term kinds on the bigdag workload, batched training loops, then fit steps on Dask
# (a few minutes). Optional peers (CasADi, micrograd, PyTorch, JAX) join the tables when installed in .venv.
bench: build
	$(PY) benchmarks/run.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/branches.py
	$(PY) benchmarks/dask_steps.py
	$(PY) benchmarks/mlp_sizes.py
	$(PY) benchmarks/stream_memory.py

# The extension rebuilt with AddressSanitizer and UBSan, the suite run against it (the interpreter is not
# instrumented, so libasan is preloaded and leak reports are off), then the normal build restored.
# ASan's allocator returns NULL for a huge request (as malloc does; a test makes one on purpose) and
# holds freed memory back, so the RSS-based leak tests are left out (-k).
ASAN_LIBS := $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libubsan.so)
ASAN_PYTEST_ARGS ?= -k "not keeps_memory_flat and not leak_check_can_fail"
test-asan: $(INSTALLED)
	RUSTOGRAD_SANITIZE=1 $(PY) setup.py --quiet build_ext --inplace --force
	LD_PRELOAD="$(ASAN_LIBS)" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(PY) -m pytest tests -x -q -p no:cacheprovider $(ASAN_PYTEST_ARGS); \
		status=$$?; $(PY) setup.py --quiet build_ext --inplace --force; exit $$status

clean:
	rm -rf build out dist docs/_build rustograd_cy/*.so rustograd_cy/*.c *.egg-info
	rm -f src/rg_ops_gen.h rustograd_cy/_tape_ops.pxi rustograd_cy/_node_ops.pxi rustograd_cy/_tape.pyi rustograd_cy/_nodes.pyi rustograd_cy/functions.pyi
