# perpbft build entry points. `make test` works on a fresh machine: it creates the virtual
# environment, installs the pinned, hash-checked dependencies of requirements.lock from PyPI
# and the package itself, then lints, type-checks and tests. `make lock` refreshes the lock
# after a change of pyproject.toml's dependencies (docs/OPERATIONS.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test test-fast lint typecheck pytest native postgresql browser anvil contracts localnet clean lock

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Re-pin every dependency (test tools included) at the newest versions pyproject.toml allows,
# with the hashes of their files on the index.
lock:
	python3 -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet pip-tools
	$(VENV)-lock/bin/pip-compile --quiet --upgrade --allow-unsafe --extra=test \
		--generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file=requirements.lock pyproject.toml
	rm -rf $(VENV)-lock

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Two passes, to stay inside CI's 30 minutes on 2 cores: the tests that start no node
# processes (unit, property, simulator, in-process servers) on two workers, a file per worker
# (a file's tests keep their order and module fixtures); then the multi-process tests (marked
# slow) one at a time, since each already starts several processes.
pytest: $(STAMP) native postgresql browser anvil
	$(VENV)/bin/pytest -n 2 --dist loadfile -m 'not slow' $(PYTEST_ARGS)
	$(VENV)/bin/pytest -m slow $(PYTEST_ARGS)

# The compiled build of the hot state-machine modules (mypyc, nativebuild/): rebuilt into
# build/mypyc/ when any state_machine source changed, and used only while its stamp matches
# the sources (docs/ARCHITECTURE.md, "The compiled build"). Needs a C compiler and the
# interpreter's headers: installed as root on Debian when missing (gcc; python3-dev for
# Debian's own python3). Without them the pure-Python modules run (a failed test session in
# CI, which expects the compiled build). The build's output goes to build/native.log.
native: $(STAMP)
	@if ! $(PY) -m nativebuild.compile --toolchain >/dev/null 2>&1 \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		pkgs="$$($(PY) -m nativebuild.compile --toolchain 2>/dev/null)"; \
		if [ -n "$$pkgs" ]; then echo "installing Debian's $$pkgs for the compiled build"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; fi; \
	fi
	@mkdir -p build
	@$(PY) -m nativebuild.compile >build/native.log 2>&1; status=$$?; \
	if [ $$status = 1 ]; then tail -40 build/native.log; exit 1; fi; tail -1 build/native.log

# The indexer tests start a real PostgreSQL server (bench/pgserver.py), from Debian's
# postgresql package: installed here when missing (as root, with apt-get), a no-op when present.
# Elsewhere those tests skip, saying why; in CI (PERPBFT_CI=1) a skip fails the run.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's postgresql for the indexer tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	else \
		echo "PostgreSQL is not installed and cannot be (not root on Debian): its tests skip"; \
	fi

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

# The bridge's end-to-end tests and the localnet's EVM chain run Foundry's anvil, from the npm
# package (pinned) into .tools/ (npm from Debian's nodejs/npm, installed as root when missing).
# Without it those tests skip, saying why (a skip fails CI), and the localnet has no bridge.
ANVIL_VERSION ?= 1.7.1
ANVIL := .tools/node_modules/.bin/anvil
anvil:
	@if [ -x "$(ANVIL)" ] && "$(ANVIL)" --version | grep -q "$(ANVIL_VERSION)"; then :; \
	elif command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& echo "installing Debian's nodejs and npm for anvil" && apt-get update -q \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }; then \
		echo "installing anvil $(ANVIL_VERSION) into .tools/"; \
		npm install --prefix .tools --no-save --no-audit --no-fund \
			@foundry-rs/anvil-linux-amd64@$(ANVIL_VERSION) >/dev/null && "$(ANVIL)" --version; \
	else \
		echo "make: no npm (apt-get install nodejs npm): the bridge's anvil tests will skip" >&2; \
	fi

# Recompile the bridge contracts into evm/artifacts/ after editing contracts/*.vy (the
# artifacts are committed; tests/evm/test_artifacts.py fails while they are stale).
contracts: $(STAMP)
	$(PY) -m evm.compile

test: lint typecheck pytest

# Everything but the slow end-to-end tests, for quick local iterations.
test-fast: lint typecheck native postgresql browser anvil
	$(VENV)/bin/pytest -m 'not slow' $(PYTEST_ARGS)

# Four validators, oracle feeders and demo traders in the background; LOCALNET_ARGS passes
# options through (e.g. LOCALNET_ARGS="--fresh --base-port 30000").
LOCALNET_ARGS ?=
localnet: $(STAMP) anvil
	$(VENV)/bin/perpbft localnet up $(LOCALNET_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info .tools
