# Set-up and everyday commands. Everything installs into .venv from the project's own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: run caption test lint install install-dev bench

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## Install, then caption an example photo with the offline default combination.
run: install
	$(PY) -m vlm_demo caption assets/examples/chelsea.jpg assets/examples/coffee.jpg

## Install everything and run the whole test suite (fails if no test runs).
test: install-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/caption_overhead.py
