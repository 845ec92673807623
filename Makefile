# perpbft build entry points. `make test` works on a fresh machine: it creates the virtual
# environment, installs the pinned, hash-checked dependencies of requirements.lock from PyPI
# and the package itself, then lints, type-checks and tests. `make lock` refreshes the lock
# after a change of pyproject.toml's dependencies (docs/OPERATIONS.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test test-fast lint typecheck pytest localnet clean lock

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
		--generate-hashes --strip-extras --output-file=requirements.lock pyproject.toml
	rm -rf $(VENV)-lock

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

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
