# xenpy: set up a virtual environment and run the main job or the tests.
#   make run    set up, then run the main job
#   make test   set up, then run the test suite (quick path; `make test-all` adds slow tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-all docs generate guest bench fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: boot the bundled SMP guest, 4 vCPUs on 2 simulated pCPUs; print its console and runstate.
run: $(STAMP)
	$(MAKE) -s -C guest
	$(BIN)/xenpy run guest/build/test-pv64-smp --vcpus 4 --pcpus 2 --runstate

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

generate:
	$(PYTHON) hypercalls/generate.py

guest:
	$(MAKE) -C guest

# Long fuzz campaigns (FUZZ_CALLS, FUZZ_SEED): hypercalls through the Python API, then from inside a guest
# (test-pv64-fuzz, seed after seed), then mutated images, xenstore messages and rings, control requests; the
# quick suite runs short ones. The hypercalls and sub-ops each reached go to fuzz-coverage-*.md.
FUZZ_CALLS ?= 1000000
FUZZ_SEED ?= 1
fuzz: $(STAMP)
	$(MAKE) -s -C guest
	$(BIN)/python -m tests.fuzz.hypercalls --calls $(FUZZ_CALLS) --seed $(FUZZ_SEED) --coverage fuzz-coverage-api.md
	$(BIN)/python -m tests.fuzz.guest --calls $(FUZZ_CALLS) --seed $(FUZZ_SEED) --coverage fuzz-coverage-guest.md
	$(BIN)/python -m tests.fuzz.inputs --cases 2000 --seed $(FUZZ_SEED)

bench: $(STAMP)
	$(MAKE) -s -C guest
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) docs/_build guest/build
