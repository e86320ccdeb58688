# The two commands the README promises, plus their set-up. Everything installs into .venv;
# the peers the parity tests compare against (the dolma toolkit, OLMo's reader) get their own
# virtual environments under .peer-venvs, because their pins clash with ours.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup peers models demo test test-fast check clean

setup: $(VENV)/.installed

# torch is pinned and installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[train,test,s3,hf,dev]'
	touch $@

# Real peers for the parity tests, and Chromium for the HTML report test (idempotent).
peers:
	./scripts/setup_chromium.sh
	./scripts/setup_peer_dolma.sh
	./scripts/setup_peer_olmo.sh

# The small quality classifier mixes/general.yaml uses on the bundled sample.
models: setup
	$(VENV)/bin/dolma-prep train-classifier mixes/classifiers/quality_sample.yaml

# The anneal mix over sample/demo (a slice of the sample corpus sized so every source can meet its
# planned share: scripts/make_demo_sample.py), then each source's planned vs achieved share.
demo: setup
	$(VENV)/bin/dolma-prep run mixes/anneal.yaml --data-root sample/demo --output out/anneal
	$(PY) scripts/demo_shares.py out/anneal

# Every test, peers included: DOLMA_PREP_REQUIRE_PEERS=1 turns a missing peer into a failure.
test: setup peers
	DOLMA_PREP_REQUIRE_PEERS=1 $(PY) -m pytest -q --durations=25

# Quick loop while developing: no Ray end-to-end runs, no peers.
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not peer"

# Lint (the whole tree), format (core/ only) and types (core/ only); CI runs it before the tests.
# The format check covers the bottom layer alone: the rest of the tree keeps its hand formatting
# for now (its `# fmt: skip` markers wait for the day it is formatted too). Settings: pyproject.
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check core/
	$(VENV)/bin/mypy core/

clean:
	rm -rf out .pytest_cache
