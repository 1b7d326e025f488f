# DermChat: `make run` installs everything and starts the app (offline CPU default);
# `make test` installs everything (system packages included), runs `make lint`, then the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
APT_PACKAGES := chromium postgresql fonts-noto-color-emoji

.PHONY: install install-system run lint test bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-extra.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --ignore-requires-python -r requirements-extra.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

# Debian packages the tests use: Chromium for the real-browser test, PostgreSQL for the study store test.
install-system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: cannot install$$missing (not root): the tests that need them will be skipped"; fi; \
	fi

run: install
	$(OFFLINE) $(PY) app.py

# ruff (lint + format check) and mypy (strict on dermchat/; settings in pyproject.toml), nothing else.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install install-system lint
	$(OFFLINE) $(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

bench: install
	$(OFFLINE) $(PY) -m dermchat bench --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
