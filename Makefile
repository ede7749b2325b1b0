# Two entry points a newcomer needs: `make repro` (install + the whole pipeline) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DVC_NO_ANALYTICS := 1
# Stage commands (`python`, `torchrun`) resolve to the project's environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro test lint benchmark summary

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstalled whenever pyproject.toml changes. torch/torchvision pinned to the builds on this
# machine kind's local disk; the ranges in pyproject.toml admit other builds elsewhere. setuptools'
# "Editable installation ... be careful with folders ... same name as your package" note is silenced:
# it says nothing about this project (lambda_repro/ is the package) and would be the install's only output.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install --quiet torch torchvision
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

repro: install
	$(BIN)/dvc repro

summary: install
	$(BIN)/lambda-repro summary

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Everything CI runs: lint, then every test including the slow end-to-end ones.
test: lint
	$(BIN)/pytest -m "slow or not slow"

benchmark: install
	$(BIN)/pytest --benchmark-only
