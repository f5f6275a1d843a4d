# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?=
PORT ?= 5672
STAMP := $(VENV)/.installed

.PHONY: run test test-pure bench lint venv clean acceptance soak

# pip builds the optional C hot path (protocol/_fast_c.pyx) when Cython and a C compiler are
# there, and installs the pure-Python one otherwise (setup.py).
# The venv holds the broker and its CLIs: $(BIN)/burrowmq, $(BIN)/burrowctl, $(BIN)/burrowmqadmin
# (`. $(BIN)/activate` puts them on PATH).
$(STAMP): pyproject.toml setup.py protocol/_fast_c.pyx
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    echo "make: burrowmq needs Python 3.11 or newer as $(PY) (make PY=python3.12 ...)"; \
	    exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "make: '$(PY) -m venv' failed; on Debian or Ubuntu: apt-get install python3-venv"; \
	    exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Data in the broker's default data directory (~/.local/share/burrowmq), where burrowctl looks
# for the node's control socket; `make run DATA_DIR=./data` keeps it elsewhere. RUN_ARGS adds
# flags (`make run RUN_ARGS=--help` lists them).
run: $(STAMP)
	$(BIN)/burrowmq --host 127.0.0.1 --port $(PORT) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(RUN_ARGS)

# Tests that need a program .ci/run installs (chromium, openssl, docker ...) are skipped here
# with the reason printed when it is missing; CI=true makes them fail instead.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The same broker on the pure-Python hot path (what runs where nothing could be compiled).
test-pure: $(STAMP)
	BURROWMQ_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q tests/protocol tests/fuzz tests/integration

# ruff, then mypy (configured in pyproject.toml: strict for protocol/, storage/, broker/core/)
lint: $(STAMP)
	$(BIN)/ruff check broker protocol storage tests bench
	$(BIN)/mypy

# Slow tests only: 1,000 connections, the soak (SOAK_SECONDS, default 600) and the fuzzers with a
# bigger budget (FUZZ_EXAMPLES per property, LIVE_FUZZ_SOAK_CONNECTIONS bad connections).
FUZZ_EXAMPLES ?= 10000
soak: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -m slow tests/load tests/fuzz

# With RabbitMQ installed, the bench starts one of its own and compares (see bench/README.md).
BENCH_ARGS ?= $(if $(wildcard /usr/lib/rabbitmq/bin/rabbitmq-server),--rabbitmq,)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

acceptance: $(STAMP)
	../shared/acceptance/run.sh --amqp-url amqp://guest:guest@127.0.0.1:5672/

clean:
	rm -rf $(VENV) build *.egg-info protocol/_fast_c.c protocol/*.so
