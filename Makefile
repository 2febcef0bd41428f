# The two commands of the README: `make demo` (the main job on the local default) and `make test`.
.PHONY: setup demo test lint test-fast pins repro-lock clean

VENV := .venv
RF := $(VENV)/bin/ringfleet

setup:
	@scripts/setup.sh

demo: setup
	$(RF) up local
	$(RF) run local jobs/digits.yaml

lint: setup
	$(VENV)/bin/ruff check .

# Everything: the reproducible-build tier (one cold build of a 2-node cluster, compared
# with the committed lock; it leaves the node image the rest reuses) and, beside it, the
# tests that need no cluster: the cold build mostly waits on mirrors and compiles, so the
# unit tests (about 4 min of one core) hide inside it instead of adding to CI. Then the
# Docker and cluster tests, the second profile's slower tier included. Every tier always
# runs; make fails when any did. The 25 slowest tests are listed.
PYTEST_TIMES := --durations=25
UNIT_TESTS := not docker and not cluster and not repro
# Its own temp dir and no cache: two pytest sessions run at once.
UNIT_ARGS := -p no:cacheprovider --basetemp=/tmp/ringfleet-unit-tests
UNIT_LOG := /tmp/ringfleet-unit-tests.log
test: setup lint
	@repro=0; unit=0; rest=0; \
	$(VENV)/bin/pytest -ra $(UNIT_ARGS) -m "$(UNIT_TESTS)" > $(UNIT_LOG) 2>&1 & unit_pid=$$!; \
	$(VENV)/bin/pytest -ra $(PYTEST_TIMES) -m repro || repro=$$?; \
	wait $$unit_pid || unit=$$?; \
	echo "make test: the unit tier, run beside the reproducible-build tier:"; cat $(UNIT_LOG); \
	$(VENV)/bin/pytest -ra $(PYTEST_TIMES) -m "(docker or cluster) and not repro" || rest=$$?; \
	echo "make test: reproducible-build tier exit $$repro, unit tier exit $$unit, Docker and cluster tier exit $$rest"; \
	[ $$repro -eq 0 ] && [ $$unit -eq 0 ] && [ $$rest -eq 0 ]

# Only the tests that need no Docker engine.
test-fast: setup lint
	$(VENV)/bin/pytest -ra -m "not docker and not cluster"

# Regenerate the hashed Python locks of the node venvs, on purpose only (docs/pinning.md).
pins: setup
	@scripts/compile-pins.sh $(PINS_ARGS)

# Rewrite tests/data/repro/ringfleet.lock from a cold build, on purpose only (docs/pinning.md).
repro-lock: setup
	RINGFLEET_REPRO_UPDATE=1 $(VENV)/bin/pytest -ra -m repro tests/providers/test_reproducible.py
	git diff --stat -- tests/data/repro/ringfleet.lock

clean:
	$(RF) down local --purge || true
