"""Everything the demo runs on, started and always stopped again.

* **Postgres**: the project-local cluster (``.local/``, :class:`~issuer_dev.localdb.ProjectDb`),
  stopped at the end when the demo started it; or any server given with
  ``--database-url``. Each run gets a fresh database: ``demo`` in the
  project-local cluster (dropped and re-created, kept afterwards for
  inspection), or ``issuer_demo_<random>`` on a given server (dropped at the end).
* **The schema**: ``sql/bootstrap`` (the Supabase stand-in) and every migration.
* **Clerk**: :class:`~issuer_dev.fake_clerk.FakeClerk` on loopback.
* **The issuer**: the real ASGI app under uvicorn on a free loopback port, in a
  thread of this process: the story talks to it over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from psycopg.rows import dict_row

from issuer.api import create_app
from issuer.rpc import Rpc
from issuer.service import Issuer
from issuer.settings import load_settings
from issuer.signing import generate_es256_jwk, generate_hs256_secret
from issuer_dev import localdb, migrations
from issuer_dev.fake_clerk import FakeClerk

PROJECT_DB_NAME = "demo"

Announce = Callable[[str], contextlib.AbstractContextManager[Any]]
"""``with announce("Starting Postgres"):``: how a slow step shows progress."""


@dataclass
class Environment:
    """A running demo environment: database, fake Clerk, issuer, HTTP server."""

    db_url: str
    db_label: str
    base_url: str
    clerk: FakeClerk
    issuer: Issuer
    http: httpx.Client
    migrations_applied: int
    postgres_note: str

    @property
    def rpc(self) -> Rpc:
        return self.issuer.rpc

    @contextlib.contextmanager
    def service_role(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection acting as ``service_role``, as a deployer's backend does."""
        with psycopg.connect(self.db_url, autocommit=True, options="-c role=service_role") as conn:
            yield conn

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Rows as dicts, read as ``service_role`` (the analytics views are granted to it)."""
        with self.service_role() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())


def _no_progress(_: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


@contextlib.contextmanager
def _postgres(
    local_dir: Path, server_url: str | None, announce: Announce
) -> Iterator[tuple[str, str, str]]:
    """(database URL, label, note) of a fresh, empty demo database."""
    if server_url:
        name = f"issuer_demo_{secrets.token_hex(4)}"
        with announce("Creating a fresh database on the given server"):
            url = localdb.create_database(server_url, name)
        try:
            yield url, name, "on the server given by --database-url; dropped at the end"
        finally:
            localdb.drop_database(server_url, name)
        return

    project = localdb.ProjectDb(local_dir)
    with announce("Starting the project-local Postgres (.local/)"):
        cluster, _, started = project.up(dbname="postgres")
    try:
        localdb.drop_database(cluster.url, PROJECT_DB_NAME)
        url = localdb.create_database(cluster.url, PROJECT_DB_NAME)
        state = "started for the demo, stopped at the end" if started else "already running"
        yield url, f"{PROJECT_DB_NAME} on 127.0.0.1:{cluster.port}", state
    finally:
        if started:
            project.down()


class _ThreadedServer(uvicorn.Server):
    """uvicorn in a background thread (no signal handlers there)."""

    def start_in_thread(self, timeout: float = 15) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="issuer-http", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not self.started:
            if not thread.is_alive():
                raise RuntimeError("the HTTP server stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start in time")
            time.sleep(0.02)
        return thread


@contextlib.contextmanager
def _serve(issuer: Issuer) -> Iterator[str]:
    port = localdb.free_port()
    config = uvicorn.Config(
        create_app(issuer),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = _ThreadedServer(config)
    thread = server.start_in_thread()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def issuer_env(db_url: str, clerk: FakeClerk) -> dict[str, str]:
    """The issuer's configuration for the demo: fresh keys each run, ES256 signing."""
    signing_key = generate_es256_jwk(f"demo-{secrets.token_hex(3)}")
    return {
        "DATABASE_URL": db_url,
        "JWT_SECRET": generate_hs256_secret(),
        "JWT_SIGNING_KEYS": json.dumps({"keys": [signing_key]}),
        "DATABASE_POOL_SIZE": "4",
        **clerk.env(),
    }


@contextlib.contextmanager
def demo_environment(
    local_dir: Path,
    *,
    server_url: str | None = None,
    announce: Announce = _no_progress,
) -> Iterator[Environment]:
    """Start everything; stop everything on the way out, also after an error."""
    with contextlib.ExitStack() as stack:
        db_url, label, note = stack.enter_context(_postgres(local_dir, server_url, announce))
        with announce("Applying sql/bootstrap and supabase/migrations"):
            migrations.apply_bootstrap(db_url)
            applied = migrations.migrate(db_url)
        clerk = stack.enter_context(FakeClerk())
        with announce("Starting the issuer's HTTP API on loopback"):
            issuer = Issuer.from_settings(load_settings(issuer_env(db_url, clerk)))
            stack.callback(issuer.close)
            base_url = stack.enter_context(_serve(issuer))
        http = stack.enter_context(httpx.Client(base_url=base_url, timeout=15))
        yield Environment(
            db_url=db_url,
            db_label=label,
            base_url=base_url,
            clerk=clerk,
            issuer=issuer,
            http=http,
            migrations_applied=len(applied),
            postgres_note=note,
        )
