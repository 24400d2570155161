"""Deployers run `supabase db push`: the real CLI must accept our migrations.

These tests run the pinned Supabase CLI (package.json) against real databases
on the test server. No Docker is needed for `db push`, `migration list` and
`db lint` when they are given a database URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from issuer_dev import localdb, migrations
from support.supabase_cli import cli_url, run_supabase


@pytest.fixture
def bare_db(pg_server: localdb.PostgresServer) -> Iterator[str]:
    """A fresh database with only the Supabase stand-in (what a new project has)."""
    name = f"issuer_push_{uuid.uuid4().hex[:10]}"
    url = localdb.create_database(pg_server.url, name)
    migrations.apply_bootstrap(url)
    try:
        yield url
    finally:
        localdb.drop_database(pg_server.url, name)


def _remote_versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return migrations.applied_versions(conn)


def test_db_push_applies_every_migration_to_a_fresh_database(bare_db: str) -> None:
    pushed = run_supabase("db", "push", "--db-url", cli_url(bare_db), "--yes")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    expected = [m.version for m in migrations.discover()]
    assert _remote_versions(bare_db) == expected

    listed = run_supabase("migration", "list", "--db-url", cli_url(bare_db))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "|" in line]
    for version in expected:
        # Local | Remote | Time: applied remotely means the version is in both columns.
        assert any(line.count(version) >= 2 for line in rows), (version, listed.stdout)

    # Our own runner agrees: nothing left to apply after the CLI's push.
    assert migrations.migrate(bare_db) == []


def test_db_push_reports_up_to_date_after_issuer_migrate(new_db: Callable[[], str]) -> None:
    url = new_db()  # a clone of the template, migrated by `issuer db migrate`'s code
    pushed = run_supabase("db", "push", "--db-url", cli_url(url), "--yes")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "up to date" in (pushed.stdout + pushed.stderr).lower()


def test_migrate_refuses_a_database_with_an_unknown_version(new_db: Callable[[], str]) -> None:
    url = new_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into supabase_migrations.schema_migrations (version, name) "
            "values ('29991231235959', 'from_elsewhere')"
        )
    with pytest.raises(migrations.MigrationError, match="29991231235959"):
        migrations.migrate(url)


def test_statement_split_matches_the_cli(bare_db: str) -> None:
    """Our history rows hold the same statements the CLI records."""
    pushed = run_supabase("db", "push", "--db-url", cli_url(bare_db), "--yes")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    with psycopg.connect(bare_db) as conn:
        rows = conn.execute(
            "select version, statements from supabase_migrations.schema_migrations"
        ).fetchall()
    by_version = {m.version: m for m in migrations.discover()}
    for version, statements in rows:
        ours = migrations.split_statements(by_version[version].text)
        assert [s.strip() for s in statements] == ours, version
