# The two commands the README promises, plus their set-up. Everything installs into .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup demo test test-fast clean

setup: $(VENV)/.installed

# torch is pinned and installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[train,test,s3,hf]'
	touch $@

demo: setup
	$(VENV)/bin/dolma-prep run mixes/anneal.yaml --output out/anneal

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not peer"

clean:
	rm -rf out .pytest_cache
