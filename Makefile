# perpbft build entry points. `make test` works on a fresh machine: it creates the virtual
# environment, installs the package with its test extra, then lints, type-checks and tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test test-fast lint typecheck pytest browser localnet clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) browser
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The web page's tests drive Debian's Chromium (never a browser download). Installed when
# missing and we are root on Debian (apt-get update first); quick when already there.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "make: no $(CHROMIUM): the browser tests will skip (apt-get install chromium)" >&2; \
	fi

test: lint typecheck pytest

# Everything but the slow end-to-end tests, for quick local iterations.
test-fast: lint typecheck
	$(VENV)/bin/pytest -m 'not slow' $(PYTEST_ARGS)

# Four validators, oracle feeders and demo traders in the background; LOCALNET_ARGS passes
# options through (e.g. LOCALNET_ARGS="--fresh --base-port 30000").
LOCALNET_ARGS ?=
localnet: $(STAMP)
	$(VENV)/bin/perpbft localnet up $(LOCALNET_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
