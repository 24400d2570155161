"""Run the real Supabase CLI (pinned in package.json) against a database URL."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from issuer_dev.migrations import repo_root


def supabase_bin() -> Path:
    exe = repo_root() / "node_modules" / ".bin" / "supabase"
    if not exe.exists():
        raise RuntimeError("the Supabase CLI is missing: run `npm ci` (make setup does)")
    return exe


def cli_url(url: str) -> str:
    """The CLI insists on TLS unless told otherwise; local servers have none."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}sslmode=disable"


def run_supabase(
    *args: str, timeout: float = 180, workdir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI with ``--workdir`` the checkout, or ``workdir`` (e.g. an unpacked release bundle)."""
    # The CLI writes telemetry and caches under $HOME/.supabase: keep it in a temp dir.
    home = tempfile.mkdtemp(prefix="supabase-home-")
    env = {**os.environ, "HOME": home, "DO_NOT_TRACK": "1", "SUPABASE_TELEMETRY_DISABLED": "1"}
    return subprocess.run(
        [str(supabase_bin()), *args, "--workdir", str(workdir or repo_root())],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
