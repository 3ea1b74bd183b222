# Touchstream — everything a fresh machine needs comes from here.
#   make run    start the embedded platform (HTTP API on 127.0.0.1:8080, data in ./data)
#   make up     start the scale-out stack locally (Tansu, Redis, 2 workers, API on :8080)
#   make down   stop a stack started with `touchstream up --detach`
#   make test   type check (mypy: strict on projections/), then the whole test suite
#               (unit, property, integration, end-to-end)
#   make bench  the benchmarks, with their same-run baselines (embedded, then Kafka)
# Versions: pyproject.toml pins what we use directly; constraints.txt pins everything
# installed, transitive dependencies included, to the set the tests passed with.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run up down test test-fast bench schemas clean services

# Integration tests start a private redis-server (or use REDIS_URL): Debian's package.
# The metrics, alert-rule and scrape tests run promtool and a real prometheus: Debian's
# prometheus package (the service it installs is not needed: tests start their own).
# The agent desk tests drive a real Chromium (Playwright, Debian's chromium package).
services:
	@command -v redis-server >/dev/null || test -n "$$REDIS_URL" || \
	  (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq prometheus >/dev/null)
	@command -v chromium >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

RUN_STAMP := $(VENV)/.installed-run

# What running needs (make run); the test extras come with make test / make install.
$(RUN_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "Installing Touchstream into $(VENV) (about a minute the first time)..."
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	@echo "Installing the test tools into $(VENV)..."
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/touchstream run

up: install services
	$(BIN)/touchstream up --runtime kafka

down: install
	$(BIN)/touchstream down

# mypy first: a type error fails the run before minutes of tests (config: pyproject.toml).
# The client generator the generated-client test runs, in a virtualenv of its own (its pins
# conflict with the platform's: tools/codegen-requirements.txt says which).
CODEGEN := .venv-codegen
CODEGEN_STAMP := $(CODEGEN)/.installed

$(CODEGEN_STAMP): tools/codegen-requirements.txt
	test -x $(CODEGEN)/bin/python || $(PYTHON) -m venv $(CODEGEN)
	$(CODEGEN)/bin/python -m pip install --quiet -r tools/codegen-requirements.txt
	touch $(CODEGEN_STAMP)

test: install services $(CODEGEN_STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install services
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not e2e"

bench: install services
	$(BIN)/touchstream bench --kafka
	$(BIN)/touchstream bench --decider --kafka

schemas: install
	$(BIN)/touchstream schemas

clean:
	rm -rf $(VENV) $(CODEGEN) data .pytest_cache .mypy_cache
