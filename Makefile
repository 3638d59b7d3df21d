# telephony_bot — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIP_PORT ?= 5060
WORKERS ?= 1
DIALPLAN ?= dialplans/example.yaml

.PHONY: install run test lint unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard telephony_bot/native/*.c) scripts/install-system-deps.sh
	PYTHON=$(PYTHON) bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/telephony-bot serve --dialplan $(DIALPLAN) --sip-port $(SIP_PORT) --workers $(WORKERS)

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/pytest -q -rs

unit: install
	$(BIN)/pytest -q tests/unit

# all benches, each writing bench/results/<name>.json; then `python -m bench.report`
# puts their tables in README.md. bench.latency records the wire on lo (AF_PACKET): run as
# root or with CAP_NET_RAW.
bench: install
	$(BIN)/python -m bench.media_path
	$(BIN)/python -m bench.echo_calls
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.local_engine
	$(BIN)/python -m bench.failover
	$(BIN)/python -m bench.flood
	$(BIN)/python -m bench.embedder
	$(BIN)/python -m bench.conversation
	$(BIN)/python -m bench.report --readme README.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
