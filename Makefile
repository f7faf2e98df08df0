# The two commands a newcomer needs: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The test suite runs on the real PostgreSQL and Redis of this machine unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cpv
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint audit format bench bench-quick install lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Every dependency is locked with its hashes (requirements*.txt, written by `make lock` from requirements*.in):
# production and the image install requirements.txt, the demo adds the simulator's, the tests their tools.
$(VENV)/.installed-runtime: requirements-demo.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-demo.txt
	touch $@

$(VENV)/.installed-dev: requirements-demo.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.txt
	touch $(VENV)/.installed-runtime $@

install: $(VENV)/.installed-dev

## demo: set up and run the control panel on embedded defaults (web, worker and beat; Ctrl-C stops all)
demo: $(VENV)/.installed-runtime
	$(BIN)/python -m cpv.demo

## test: set up and run the whole suite on PostgreSQL, Redis, real Celery workers and a real browser
test: $(VENV)/.installed-dev
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" CPV_TEST_REDIS_URL="$${CPV_TEST_REDIS_URL:-$(TEST_REDIS_URL)}" \
		$(BIN)/python -m tests.preflight
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" CPV_TEST_REDIS_URL="$${CPV_TEST_REDIS_URL:-$(TEST_REDIS_URL)}" \
		$(BIN)/pytest $(PYTEST_ARGS)

## test-fast: the unit tests on SQLite, without PostgreSQL, Redis or a browser
test-fast: $(VENV)/.installed-dev
	DATABASE_URL=sqlite:///:memory: $(BIN)/pytest -m "not postgres and not redis and not browser and not slow" $(PYTEST_ARGS)

## lint: ruff, mypy, the import layers (import-linter) and a check that the models and migrations agree
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run

## bench: the benchmarks at full size on PostgreSQL, Redis, real workers and the simulator (see README)
## bench-quick (or make bench QUICK=1): their small versions, as CI runs them
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run_all.py $(if $(QUICK),--quick,)

bench-quick: $(VENV)/.installed-dev
	$(BIN)/python bench/run_all.py --quick

## audit: known vulnerabilities in every lock (.ci/audit), loud either way; fails on a vulnerability found, and
## says NOT AUDITED and fails where this machine cannot fetch the vulnerability data, unless CPV_AUDIT_OFFLINE_OK=1
audit: $(VENV)/.installed-dev
	CPV_AUDIT_BIN=$(BIN) .ci/audit

## lock: write the hashed locks (requirements*.txt) from the direct, pinned dependencies (requirements*.in)
lock: $(VENV)/.installed-dev
	for name in requirements requirements-demo requirements-dev; do \
		$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-header --no-emit-index-url --no-emit-find-links \
			--annotation-style line $$name.in -o $$name.txt || exit 1; \
	done

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var test-output .pytest_cache .mypy_cache .ruff_cache
