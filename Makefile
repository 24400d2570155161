# The verbs of this project. CI calls the same ones (.ci/run -> make test).
#
#   make demo    the end-to-end story on a local database the project starts itself
#   make test    the whole suite: pgTAP, Python, Deno, the extension, deployability, browser
#   make gen     regenerate the typed RPC client (py/issuer/rpc_generated.py, db_types.ts)
#                from the migrations' catalog; a test fails when it is stale
#   make lint    ruff, mypy --strict, sqlfluff, supabase db lint, deno lint/fmt, tsc + eslint (extension/),
#                Redocly's recommended rules on docs/openapi.json
#   make bench   benchmarks against Postgres' own ceiling (bench-quick: < 2 min)
#   make soak    a bounded load run against a local server
#   make serve   the HTTP API on 127.0.0.1:8000 (needs DATABASE_URL and JWT_SECRET)
#   make dist    the release in dist/: wheel, Supabase bundle, .vsix (scripts/dist.py)
#   make clean   remove .local/ (demo and `issuer db up` data)
#   make lock    re-resolve requirements/*.txt after a change to pyproject.toml
#                (keeps every existing pin; `make lock-upgrade` moves them all)
#   make verify-lock  a second fresh venv from the lock has the same `pip freeze`

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
EXT_STAMP := extension/node_modules/.installed
SYS_STAMP := .local/.system-deps

.PHONY: setup test lint gen demo bench bench-quick soak serve clean fmt lock lock-upgrade verify-lock dist

# The Python lock (CONTRIBUTING.md, "Dependencies"): uv compiles pyproject.toml
# into hashed requirement files; setup installs exactly those, nothing else.
LOCKS := requirements/dev.txt requirements/runtime.txt requirements/bootstrap.txt
UV_COMPILE = $(BIN)/uv pip compile -q --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock"

# $(call sync_venv,DIR): DIR becomes a venv holding exactly requirements/dev.txt
# (uv itself comes from requirements/bootstrap.txt, by hash) plus this checkout.
define sync_venv
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	@$(1)/bin/python -m pip install -q --require-hashes --no-deps -r requirements/bootstrap.txt
	@$(1)/bin/uv pip sync -q --python $(1)/bin/python --require-hashes requirements/dev.txt
	@$(1)/bin/uv pip install -q --python $(1)/bin/python --no-deps -e .
	@# The development harness (py/issuer_dev) is not in the wheel: put py/ on the path.
	@echo "$(CURDIR)/py" > "$$($(1)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/issuer-dev.pth"
endef

setup: $(SYS_STAMP) $(PY_STAMP) $(NODE_STAMP) $(EXT_STAMP)

$(SYS_STAMP): scripts/system-deps.sh
	@bash scripts/system-deps.sh
	@mkdir -p .local && touch $@

$(PY_STAMP): pyproject.toml $(LOCKS)
	$(call sync_venv,$(VENV))
	@touch $@

# Update the lock on purpose. `lock` keeps every pin it can (run it after adding
# or removing a dependency, e.g. after merging branches); `lock-upgrade` moves
# every pin to the newest release pyproject.toml allows (the monthly routine).
lock: $(PY_STAMP)
	$(UV_COMPILE) $(LOCK_ARGS) --extra dev -o requirements/dev.txt pyproject.toml
	$(UV_COMPILE) -c requirements/dev.txt -o requirements/runtime.txt pyproject.toml
	echo uv | $(UV_COMPILE) -c requirements/dev.txt -o requirements/bootstrap.txt -
	$(call sync_venv,$(VENV))
	@touch $(PY_STAMP)

lock-upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

verify-lock: $(PY_STAMP)
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	$(MAKE) --no-print-directory _venv-in DIR=$$d/venv && \
	diff <($(BIN)/python -m pip freeze --exclude-editable) \
	     <($$d/venv/bin/python -m pip freeze --exclude-editable) && \
	echo "verify-lock: a fresh venv from the lock has the same pip freeze as $(VENV)"

_venv-in:
	$(call sync_venv,$(DIR))

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
	@# The OpenAPI document as generators read it: Redocly's recommended rules (redocly.yaml), offline.
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true node_modules/.bin/redocly lint docs/openapi.json
	@if ls supabase/functions/*/index.ts >/dev/null 2>&1; then \
		node_modules/.bin/deno lint supabase/functions docs/examples && \
		node_modules/.bin/deno fmt --check supabase/functions docs/examples; fi

fmt: setup
	$(BIN)/ruff format py bench scripts
	$(BIN)/ruff check --fix py bench scripts
	$(BIN)/sqlfluff fix supabase/migrations sql/tests sql/bootstrap sql/test_helpers

gen: setup
	$(BIN)/python -m issuer_dev.gen_rpc

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

# The .vsix only once extension/package.json exists (the extension's own branch).
dist: setup
	rm -rf dist
	$(BIN)/python scripts/dist.py --out dist

clean:
	@if [ -x $(BIN)/issuer ]; then $(BIN)/issuer db down --purge >/dev/null 2>&1 || true; fi
	rm -rf .local
