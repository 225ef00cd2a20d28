# xenpy: set up a virtual environment and run the main job or the tests.
#   make run    set up, then run the main job
#   make test   set up, then run the test suite (quick path; `make test-all` adds slow tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-all docs generate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/xenpy abi show vcpu_runstate_info --arch x86_64
	$(BIN)/xenpy abi show vcpu_runstate_info --arch x86_32

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

generate:
	$(PYTHON) hypercalls/generate.py

clean:
	rm -rf $(VENV) docs/_build guest/build
