"""Run one pgTAP file with pg_prove and report whether every assertion passed."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: pgTAP lives in schema ``extensions`` (as on Supabase); test helpers in ``tests``.
PGTAP_SEARCH_PATH = "public,extensions,tests"


@dataclass(frozen=True)
class PgTapResult:
    ok: bool
    output: str


def run_pgtap_file(db_url: str, path: Path, timeout: float = 300) -> PgTapResult:
    pg_prove = shutil.which("pg_prove")
    if pg_prove is None:
        raise RuntimeError(
            "pg_prove is missing: apt-get install libtap-parser-sourcehandler-pgtap-perl "
            "postgresql-15-pgtap (.ci/run and `make setup` install them)"
        )
    env = dict(os.environ)
    env["PGOPTIONS"] = f"-c search_path={PGTAP_SEARCH_PATH} -c client_min_messages=warning"
    proc = subprocess.run(
        [pg_prove, "--verbose", "--failures", "--dbname", db_url, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return PgTapResult(ok=proc.returncode == 0, output=proc.stdout + proc.stderr)
