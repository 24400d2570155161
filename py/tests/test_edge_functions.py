"""The Supabase Edge Functions (supabase/functions, Deno/TypeScript) under `deno test`.

Deno comes from npm (package.json pins it); its cache lives in `.local/deno`
so npm: packages are fetched once per machine. The Deno tests get:

* ``DATABASE_URL``: a fresh clone of the migrated template (superuser URL;
  the functions' own connection runs as ``service_role``);
* ``POSTGREST_URL`` and ``SUPABASE_SERVICE_ROLE_KEY``: the PostgREST double
  (support/postgrest_double.py, a stand-in because no PostgREST binary can be
  installed here) so the supabase-js backend is exercised against the same
  database.

Deno tests that need those are *ignored* without them; this runner fails if
any test was ignored, so a missing variable cannot pass silently.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from issuer_dev.migrations import repo_root
from support.postgrest_double import running_postgrest_double

ROOT = repo_root()
DENO = ROOT / "node_modules" / ".bin" / "deno"
FUNCTIONS = ROOT / "supabase" / "functions"
CONFIG = FUNCTIONS / "deno.json"
TIMEOUT = 600  # the first run downloads npm packages into .local/deno


def _deno_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "DENO_DIR": str(ROOT / ".local" / "deno"),
        "NO_COLOR": "1",
        "DENO_NO_UPDATE_CHECK": "1",
    }
    # The functions pick their backend from these; the tests set their own.
    for name in ("SUPABASE_DB_URL", "SUPABASE_URL", "RPC_BACKEND", "JWT_SECRET", "ISSUER_JWKS_URL"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def _deno(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not DENO.exists():
        pytest.fail(f"{DENO} is missing: run `npm ci` (make setup installs it)")
    return subprocess.run(
        [str(DENO), *args],
        cwd=ROOT,
        env=env or _deno_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def test_edge_functions_type_check() -> None:
    """`deno check` of every module (entry points included) with the lock file frozen."""
    proc = _deno("check", "--frozen", "--config", str(CONFIG), str(FUNCTIONS))
    assert proc.returncode == 0, _output(proc)


def test_edge_functions_lint_and_format() -> None:
    """What `make lint` runs for supabase/functions: `deno lint` and `deno fmt --check`."""
    lint = _deno("lint", "--config", str(CONFIG), str(FUNCTIONS))
    assert lint.returncode == 0, _output(lint)
    fmt = _deno("fmt", "--check", "--config", str(CONFIG), str(FUNCTIONS))
    assert fmt.returncode == 0, _output(fmt)


def test_edge_functions_deno_tests(new_db: Callable[[], str]) -> None:
    """`deno test` of supabase/functions against a fresh migrated database."""
    db_url = new_db()
    key = secrets.token_urlsafe(32)
    with running_postgrest_double(db_url, key) as double:
        env = _deno_env(
            {
                "DATABASE_URL": db_url,
                "POSTGREST_URL": double.url,
                "SUPABASE_SERVICE_ROLE_KEY": key,
            }
        )
        proc = _deno(
            "test",
            "--frozen",
            "--config",
            str(CONFIG),
            "--allow-env",
            "--allow-net",
            "--allow-read",
            str(FUNCTIONS),
            env=env,
        )
    output = _output(proc)
    assert proc.returncode == 0, output
    summary = [line for line in proc.stdout.splitlines() if re.match(r"^ok \| \d+ passed", line)]
    assert summary, output
    assert "ignored" not in summary[-1], f"some Deno tests were ignored:\n{output}"
    assert "apply_clerk_event" in double.calls, "the supabase-js backend test did not run"


def test_edge_function_sources_are_where_config_toml_says() -> None:
    """config.toml's [functions.*] entrypoints and import map exist."""
    config = (ROOT / "supabase" / "config.toml").read_text()
    for name in ("clerk-webhooks", "metered-usage"):
        section = re.search(
            rf"^\[functions\.{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", config, re.M | re.S
        )
        assert section, f"[functions.{name}] missing from supabase/config.toml"
        body = section.group(1)
        assert re.search(r"^verify_jwt = false$", body, re.M), body
        for key in ("entrypoint", "import_map"):
            match = re.search(rf'^{key} = "(.+)"$', body, re.M)
            assert match, f"{key} missing for {name}"
            assert (ROOT / "supabase" / Path(match.group(1))).resolve().is_file(), match.group(1)
