"""`issuer demo` (what `make demo` runs): the story's key outputs, and nothing left behind.

Two runs: the real ``issuer demo`` executable on this session's Postgres server
(``--database-url``: the demo creates its own database there and drops it),
and the default path in-process: the project-local cluster, here in a
temporary directory instead of the checkout's ``.local/``, started and
stopped by the demo.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from issuer_dev import localdb
from issuer_dev.demo import run_demo
from issuer_dev.demo.render import Narrator

ISSUER = str(Path(sys.executable).parent / "issuer")


def demo_databases(server_url: str) -> list[str]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        rows = conn.execute(
            "select datname from pg_database where datname like 'issuer_demo_%'"
        ).fetchall()
    return [r[0] for r in rows]


def test_issuer_demo_tells_the_story(pg_server: localdb.PostgresServer) -> None:
    before = demo_databases(pg_server.url)
    started = time.monotonic()
    done = subprocess.run(
        [ISSUER, "demo", "--database-url", pg_server.url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Traceback" not in done.stderr
    # Scope per person.
    assert "Alice asks for Acme Inc → org token: Acme Inc, seat owner" in out
    assert "Bob asks for Acme Inc → org token: Acme Inc, seat member" in out
    assert "Carol asks for Acme Inc → personal token (org_scope_denied: no_active_seat)" in out
    assert "Dave asks for no org → personal token" in out
    # The idempotent replay.
    assert "Bob's client retries the same request" in out
    assert "replayed=true · pool still 50: charged once" in out
    # The dry pool: 402 naming Acme Inc, no fallback.
    assert "Bob spends 5 → 402 insufficient_credits · Acme Inc" in out
    assert "Bob's personal balance untouched: 25" in out
    # The revoked seat.
    assert "Bob's org token still verifies" in out
    assert "Bob spends 5 → 403 no_active_seat" in out
    # H2: Bob's capped seat is refused while Alice still spends.
    assert "Bob spends 2 → 403 seat_cap_reached" in out
    assert "Alice spends 10: the pool still serves the seats under their caps" in out
    # Analytics and consistency.
    assert "usage per seat (seats_of_an_org, public.credit_usage_by_seat)" in out
    assert "credit_consistency_check(): empty" in out
    assert "Alice's extension holds 10 before the stream starts" in out
    assert "The stream ends costing 3.5: captured 3.5, 6.5 released" in out
    assert "A second capture of the same hold → 409 hold_already_captured" in out
    assert "Demo complete" in out
    assert "✗" not in out
    assert "\x1b[" not in out  # piped: plain text, no escape codes or spinner frames
    assert demo_databases(pg_server.url) == before  # its database was dropped
    assert elapsed < 60


def test_demo_default_path_uses_and_stops_the_project_local_cluster(tmp_path: Path) -> None:
    if localdb.find_postgres_bindir() is None:
        pytest.skip("needs Postgres binaries on this machine")
    local = tmp_path / ".local"
    buffer = io.StringIO()
    narrator = Narrator(Console(file=buffer, width=120, highlight=False))
    threads_before = {t.name for t in threading.enumerate()}
    try:
        report = run_demo(local, narrator=narrator)
        assert report.ok, report.failures
        assert report.scopes == {
            "Alice": "organization",
            "Bob": "organization",
            "Carol": "personal",
            "Dave": "personal",
        }
        assert report.denials == {"Carol": "no_active_seat"}
        assert report.replayed and report.charged_once
        assert report.dry_status == 402
        assert report.dry_body == {
            "error": "insufficient_credits",
            "pool": "organization",
            "organization_name": "Acme Inc",
        }
        assert report.bob_personal_untouched
        assert report.revoked_status == 403 and report.revoked_body["error"] == "no_active_seat"
        assert report.final_pool == Decimal(15)
        assert report.capped_status == 403
        assert report.capped_body["error"] == "seat_cap_reached"
        assert report.consistency_problems == []

        # Nothing left running: the cluster the demo started is stopped again,
        # and the HTTP server's and the fake Clerk's threads are gone.
        project = localdb.ProjectDb(local)
        assert project.url() is None
        leftover = {t.name for t in threading.enumerate()} - threads_before
        assert not leftover & {"issuer-http", "fake-clerk"}
        assert "started for the demo, stopped at the end" in buffer.getvalue()

        # A second run starts from a fresh `demo` database: same story, same result.
        again = run_demo(local, narrator=Narrator(Console(file=io.StringIO(), width=120)))
        assert again.ok and again.final_pool == Decimal(15)
    finally:
        localdb.ProjectDb(local).down(purge=True)
