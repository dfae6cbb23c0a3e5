# ragsite: `make run` starts the whole stack, `make test` runs the whole suite.
# Every target installs what it needs first; nothing here needs a manual step.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
ML_VENV := .venv-inference
MLPY := $(ML_VENV)/bin/python
STAMP := .cache/stamps
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Prerequisites of `make test` / `make run`; the fragments in mk/ add to them.
TEST_PREREQS := $(STAMP)/venv
RUN_PREREQS := $(STAMP)/venv

-include mk/*.mk

.PHONY: help run test lint format pytest clean-data audit

help:
	@echo "make run    start the whole stack (database, broker, worker, inference API, web)"
	@echo "make test   lint, type-check and run the whole test suite"

$(STAMP)/venv: requirements.txt requirements-dev.txt
	@mkdir -p $(STAMP)
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install --python $(VPY) -q -r requirements-dev.txt
	@touch $@

$(STAMP)/venv-inference: inference/requirements.txt
	@mkdir -p $(STAMP)
	@test -x $(MLPY) || $(PYTHON) -m venv $(ML_VENV)
	$(MLPY) -m pip install -q -r inference/requirements.txt
	@touch $@

lint: $(STAMP)/venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache  # the layers in pyproject.toml (docs/architecture.md)

format: $(STAMP)/venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Starts throwaway PostgreSQL and Redis for the run (or uses DATABASE_URL / CELERY_BROKER_URL), then pytest.
pytest: $(TEST_PREREQS)
	$(VPY) -m ragsite.devstack exec -- $(VPY) -m pytest $(PYTEST_ARGS)

test: $(TEST_PREREQS)
	$(MAKE) lint
	$(MAKE) audit
	$(MAKE) pytest

# Known vulnerabilities with a fix in both Python environments and the front-end libraries (ragsite/audit.py);
# passes with a note when the vulnerability services cannot be reached.
audit: $(TEST_PREREQS)
	$(VPY) -m ragsite.audit

run: $(RUN_PREREQS)
	$(VPY) -m ragsite.devstack run

clean-data:
	rm -rf .data
