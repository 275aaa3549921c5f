# Two commands on a fresh machine: `make demo` (install, load the demo, serve) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo serve test lint typecheck install install-test influxdb browser clean

$(BIN)/specwatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(VENV)/.test-deps: pyproject.toml $(BIN)/specwatch
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/specwatch
install-test: $(VENV)/.test-deps

## demo: install, migrate the default SQLite database, load the demo history and serve the API
demo: install
	$(BIN)/specwatch db upgrade
	$(BIN)/specwatch demo
	@echo "Specwatch: http://$(HOST):$(PORT)/dashboard/  ·  API docs: http://$(HOST):$(PORT)/docs"
	$(BIN)/specwatch serve --host $(HOST) --port $(PORT)

serve: install
	$(BIN)/specwatch serve --host $(HOST) --port $(PORT)

## influxdb: Debian's InfluxDB 1.x, for the tests (they start their own influxd on a free port)
influxdb:
	@command -v influxd >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null; }

## browser: Debian's Chromium and its driver, for the dashboard tests (nothing is downloaded at run time)
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## typecheck: mypy --strict and the import-layer contracts, on the installed layout
typecheck: install-test
	$(BIN)/python tests/static_checks.py

## test: install everything the tests need, then lint, type-check and run the whole suite
test: install-test influxdb browser lint typecheck
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis specwatch.sqlite3*
