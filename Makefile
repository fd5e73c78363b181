# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test clean adios2-mpi test-mpi

install: $(STAMP)

# torch is pinned to the CPU build that ships on local disk; the project's own
# requirement stays a range (see pyproject.toml).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0" || $(PY) -m pip install --quiet "torch>=2.2,<3"
	$(PY) -m pip install --quiet -e ".[mpich,examples,test,frb,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Serial by default. PYTEST_ARGS="-n 2 --dist loadfile" runs two pytest-xdist workers (one
# test file per worker at a time: a module's fixtures run once): on a subset of 43
# process-waiting tests measured side by side on the loaded 2-core machine it took 0.61x
# the serial wall time, with the same failures either way; not yet measured on the full
# suite, whose MPI and benchmark tests already use both cores.
PYTEST_ARGS ?=
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info out

# Opt-in: an MPI-enabled ADIOS2 (CMake build of the PyPI source package) in a
# second venv, .venv-mpi; cached in ~/.cache/intransit, a second run does
# nothing. See docs/hpc.md. `make test` skips the MPI tests (saying so) without it.
adios2-mpi:
	PYTHON=$(PYTHON) bash deploy/build_adios2_mpi.sh

test-mpi: $(STAMP) adios2-mpi
	$(PY) -m pytest tests/test_mpi_adios2.py
