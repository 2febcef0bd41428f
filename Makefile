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

# Everything: first the reproducible-build tier (one cold build of a 2-node cluster,
# compared with the committed lock; it leaves the node image the rest reuses), then
# the rest, multi-node cluster tests and the second profile's slower tier included.
# Both tiers always run; make fails when either did. The 25 slowest tests are listed.
PYTEST_TIMES := --durations=25
test: setup lint
	@repro=0; rest=0; \
	$(VENV)/bin/pytest -ra $(PYTEST_TIMES) -m repro || repro=$$?; \
	$(VENV)/bin/pytest -ra $(PYTEST_TIMES) || rest=$$?; \
	echo "make test: reproducible-build tier exit $$repro, rest of the suite exit $$rest"; \
	[ $$repro -eq 0 ] && [ $$rest -eq 0 ]

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
