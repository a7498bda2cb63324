# One entry point for people and CI. Everything installs into ./.venv from the project's own files.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.edgepose-installed

.PHONY: setup native test bench demo clean

setup: $(STAMP)

$(STAMP): requirements/host.txt pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.hpp csrc/*.h csrc/*.inc)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23"
	$(PY) -m pip install -q -r requirements/host.txt
	# rknn-toolkit2 pins an old CUDA torch; its real needs are in requirements/host.txt (docs/INSTALL.md)
	$(PY) -m pip install -q --no-deps rknn-toolkit2==2.5.0
	EDGEPOSE_REQUIRE_NATIVE=1 $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

# Rebuild only the C++ core after editing csrc/.
native:
	EDGEPOSE_REQUIRE_NATIVE=1 $(PY) setup.py -q build_ext --inplace

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) -m pytest -q benchmarks

demo: setup
	$(PY) -m host_tools.demo

clean:
	rm -rf build *.egg-info edgepose/*.so
