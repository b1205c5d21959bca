# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: install serve test lint bench
install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/mcoflow serve

lint: $(STAMP)
	$(VENV)/bin/ruff check mcoflow tests benchmarks
	$(VENV)/bin/ruff format --check mcoflow tests benchmarks
	$(VENV)/bin/mypy

# The browser tests run in their own pytest process: Playwright's sync API keeps an event
# loop of its own that must not meet pytest-asyncio's loops in later tests.
test: lint
	$(VENV)/bin/python -m pytest --ignore=tests/acceptance/web $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest tests/acceptance/web $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/engine.py --store sqlite
	$(VENV)/bin/python benchmarks/engine.py --store postgresql
