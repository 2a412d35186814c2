VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-rollback test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# DEMO_ARGS: more `cutover demo` options, e.g. DEMO_ARGS="--proxy-port 18080", or
# DEMO_ARGS=--access-log: the proxy's access log to a file, with the `tail -f` line to show it.
# The recipe is one plain command, so make runs it without a shell and passes SIGTERM on to it
# (a SIGHUP from a closed terminal reaches both, as the whole process group gets it).
DEMO_ARGS ?=

# Both run config/migrations.yaml: two migrations ramping on their own schedules; demo-rollback
# faults trade-engine's endpoint only, which rolls back while strategies goes on to promoted.
# DEMO_CONFIG=config/cutover.yaml runs the single-migration config instead.
DEMO_CONFIG ?= config/migrations.yaml

demo: $(STAMP)
	$(BIN)/cutover demo --config $(DEMO_CONFIG) $(DEMO_ARGS)

demo-rollback: $(STAMP)
	$(BIN)/cutover demo --config $(DEMO_CONFIG) --fault error-rate $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/proxy_bench.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
