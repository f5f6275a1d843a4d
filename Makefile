# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./data
STAMP := $(VENV)/.installed

.PHONY: run test test-pure bench lint venv clean acceptance soak

# pip builds the optional C hot path (protocol/_fast_c.pyx) when Cython and a C compiler are
# there, and installs the pure-Python one otherwise (setup.py).
$(STAMP): pyproject.toml setup.py protocol/_fast_c.pyx
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m broker --host 127.0.0.1 --port 5672 --data-dir $(DATA_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The same broker on the pure-Python hot path (what runs where nothing could be compiled).
test-pure: $(STAMP)
	BURROWMQ_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q tests/protocol tests/fuzz tests/integration

lint: $(STAMP)
	$(BIN)/ruff check broker protocol storage tests bench

# Slow tests only: 1,000 connections, the soak (SOAK_SECONDS, default 600) and the fuzzers with a
# bigger budget (FUZZ_EXAMPLES per property, LIVE_FUZZ_SOAK_CONNECTIONS bad connections).
FUZZ_EXAMPLES ?= 10000
soak: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -m slow tests/load tests/fuzz

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

acceptance: $(STAMP)
	../shared/acceptance/run.sh --amqp-url amqp://guest:guest@127.0.0.1:5672/

clean:
	rm -rf $(VENV) build *.egg-info protocol/_fast_c.c protocol/*.so
