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

# The browser tests drive Debian's Chromium (no browser download is possible). As root on
# a Debian-like system it is installed here when missing, as .ci/run does; elsewhere the
# browser tests are skipped and the skip says how to get it.
CHROMIUM := /usr/bin/chromium

.PHONY: chromium
chromium:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# -rs prints the reason of every skipped test. The browser tests run in their own pytest
# process: Playwright's sync API keeps an event loop of its own that must not meet
# pytest-asyncio's loops in later tests.
test: lint chromium
	$(VENV)/bin/python -m pytest -rs --ignore=tests/acceptance/web $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest -rs tests/acceptance/web $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/engine.py --store sqlite
	$(VENV)/bin/python benchmarks/engine.py --store postgresql
