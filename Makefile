# The two commands of the README: `make drill` runs the restore drills on the embedded defaults,
# `make test` runs lint, type checks and every test. Both set up what they need first.

# Debian's python3 (not a pyenv one under /root): server processes started as the `postgres`
# user must be able to run this interpreter when they call back into the tool.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
DRILL_ARGS ?=

.PHONY: setup system-packages drill test lint benchmark clean

setup: system-packages $(VENV)/.installed

system-packages:
	@scripts/install-system-packages.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[drill,dev]'
	touch $@

drill: setup
	$(BIN)/backup-engine drill $(DRILL_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

benchmark: setup
	$(BIN)/python benchmarks/backup_throughput.py
	$(BIN)/python benchmarks/base_rates.py
	$(BIN)/python benchmarks/wal_rates.py
	$(BIN)/python benchmarks/media_rates.py
	$(BIN)/python benchmarks/incremental.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis drill-report *.egg-info
