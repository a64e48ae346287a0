# The two quick-start commands are `make run` and `make test`; everything else is a helper of theirs.
SHELL := /bin/bash
UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
UV := $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
PY := .venv/bin/python

.PHONY: install run test lint typecheck bench test-deps proxy-demo

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install --quiet uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --frozen --python python3.11

## Install and run Veil on its embedded default (SQLite, no servers, demo data).
run: install
	bin/veil-dev

## Next to `make run` (another terminal): a sample shop on the local PostgreSQL behind veil-proxy.
proxy-demo: install
	bin/proxy-demo

# What the tests need beyond Python: the OpenID provider (npm), Chromium, pgbouncer and promtool (Debian).
test-deps: install
	npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@command -v pgbouncer >/dev/null || (apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null)
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq prometheus >/dev/null)

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports --no-logo  # the import contracts in pyproject.toml ([tool.importlinter])

typecheck: install
	.venv/bin/mypy audit identity masking jitaccess sdk/veil_sdk

## Install and run the whole test suite against PostgreSQL and Redis (DATABASE_URL, REDIS_URL).
test: test-deps lint typecheck
	$(PY) manage.py makemigrations --check --dry-run
	.venv/bin/pytest

bench: $(UV)
	$(UV) sync --frozen --python python3.11 --group bench
	$(PY) -m bench
