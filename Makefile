# The verbs of this project. CI calls the same ones (.ci/run -> make test).
#
#   make demo    the end-to-end story on a local database the project starts itself
#   make test    the whole suite: pgTAP, Python, Deno, the extension, deployability, browser
#   make lint    ruff, mypy --strict, sqlfluff, supabase db lint, deno lint/fmt, tsc + eslint (extension/)
#   make bench   benchmarks against Postgres' own ceiling (bench-quick: < 2 min)
#   make soak    a bounded load run against a local server
#   make serve   the HTTP API on 127.0.0.1:8000 (needs DATABASE_URL and JWT_SECRET)
#   make clean   remove .local/ (demo and `issuer db up` data)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
EXT_STAMP := extension/node_modules/.installed
SYS_STAMP := .local/.system-deps

.PHONY: setup test lint demo bench bench-quick soak serve clean fmt

setup: $(SYS_STAMP) $(PY_STAMP) $(NODE_STAMP) $(EXT_STAMP)

$(SYS_STAMP): scripts/system-deps.sh
	@bash scripts/system-deps.sh
	@mkdir -p .local && touch $@

$(PY_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q -U pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The VS Code extension's own toolchain (tsc, eslint, esbuild, vsce, its tests' libraries).
$(EXT_STAMP): extension/package.json extension/package-lock.json
	@cd extension && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check py bench scripts
	$(BIN)/ruff format --check py bench scripts
	$(BIN)/mypy
	$(BIN)/sqlfluff lint supabase/migrations sql/tests sql/bootstrap sql/test_helpers
	$(BIN)/python scripts/db_lint.py
	cd extension && npm run --silent check && npm run --silent lint
	@if ls supabase/functions/*/index.ts >/dev/null 2>&1; then \
		node_modules/.bin/deno lint supabase/functions docs/examples && \
		node_modules/.bin/deno fmt --check supabase/functions docs/examples; fi

fmt: setup
	$(BIN)/ruff format py bench scripts
	$(BIN)/ruff check --fix py bench scripts
	$(BIN)/sqlfluff fix supabase/migrations sql/tests sql/bootstrap sql/test_helpers

demo: setup
	$(BIN)/issuer demo

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: setup
	$(BIN)/python -m bench --quick

soak: setup
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

serve: setup
	$(BIN)/issuer serve

clean:
	@if [ -x $(BIN)/issuer ]; then $(BIN)/issuer db down --purge >/dev/null 2>&1 || true; fi
	rm -rf .local
