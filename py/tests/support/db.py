"""Test databases: one migrated template per session, cheap clones per test.

The template holds the bootstrap (Supabase stand-in), every migration and the
pgTAP helpers. ``create database ... template`` copies it in milliseconds, so
tests that commit (concurrency, HTTP) get a database of their own and never
see another test's rows.
"""

from __future__ import annotations

import uuid

import psycopg

from issuer_dev import localdb, migrations


def build_template(server_url: str) -> str:
    name = f"issuer_tpl_{uuid.uuid4().hex[:10]}"
    url = localdb.create_database(server_url, name)
    migrations.apply_bootstrap(url)
    migrations.migrate(url)
    migrations.apply_sql_dir(url, migrations.repo_root() / "sql" / "test_helpers")
    # Templates must have no open connections when cloned.
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = %s and pid <> pg_backend_pid()",
            (name,),
        )
    return name


def clone(server_url: str, template: str, prefix: str = "issuer_test") -> tuple[str, str]:
    """A fresh database cloned from the template: (name, url)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    return name, localdb.create_database(server_url, name, template=template)
