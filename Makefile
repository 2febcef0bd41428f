# The two commands of the README: `make demo` (the main job on the local default) and `make test`.
.PHONY: setup demo test lint test-fast clean

VENV := .venv
RF := $(VENV)/bin/ringfleet

setup:
	@scripts/setup.sh

demo: setup
	$(RF) up local
	$(RF) run local jobs/digits.yaml

lint: setup
	$(VENV)/bin/ruff check .

# Everything, including the multi-node cluster tests.
test: setup lint
	$(VENV)/bin/pytest -ra

# Only the tests that need no Docker engine.
test-fast: setup lint
	$(VENV)/bin/pytest -ra -m "not docker and not cluster"

clean:
	$(RF) down local --purge || true
