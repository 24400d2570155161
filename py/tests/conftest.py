"""Fixtures: a real Postgres for every test.

How a test finds its database (see README, "Tests"):

* ``pg_server``: the server for the session, from ``issuer_dev.localdb`` (your
  ``DATABASE_URL`` if set, else a throwaway cluster of local binaries, ...).
* ``template_db``: created once per session: bootstrap + migrations + pgTAP
  helpers. Dropped at the end.
* ``db_url``: a fresh clone for each test module (superuser URL).
* ``new_db``: a factory for a fresh clone inside one test.

Every database a test creates is dropped afterwards, also on a server given
by ``DATABASE_URL``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from issuer_dev import localdb
from issuer_dev.fake_clerk import FakeClerk
from support import db as testdb
from support.replica import ReplicaPair, running_replica_pair
from support.world import World, make_world


@pytest.fixture(scope="session")
def pg_server() -> Iterator[localdb.PostgresServer]:
    server = localdb.start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def template_db(pg_server: localdb.PostgresServer) -> Iterator[str]:
    name = testdb.build_template(pg_server.url)
    try:
        yield name
    finally:
        localdb.drop_database(pg_server.url, name)


@pytest.fixture(scope="module")
def db_url(pg_server: localdb.PostgresServer, template_db: str) -> Iterator[str]:
    name, url = testdb.clone(pg_server.url, template_db)
    try:
        yield url
    finally:
        localdb.drop_database(pg_server.url, name)


@pytest.fixture
def new_db(pg_server: localdb.PostgresServer, template_db: str) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name, url = testdb.clone(pg_server.url, template_db)
        created.append(name)
        return url

    try:
        yield make
    finally:
        for name in created:
            localdb.drop_database(pg_server.url, name)


@pytest.fixture(scope="module")
def fake_clerk() -> Iterator[FakeClerk]:
    with FakeClerk() as clerk:
        yield clerk


@pytest.fixture(scope="module")
def world(db_url: str, fake_clerk: FakeClerk) -> Iterator[World]:
    """Fake Clerk + this module's database + a real Issuer and an in-process HTTP client."""
    w = make_world(db_url, fake_clerk)
    try:
        yield w
    finally:
        w.close()
        w.issuer.close()


@pytest.fixture(scope="module")
def replica_pair() -> Iterator[ReplicaPair]:
    """A primary with a migrated database and a streaming replica of it (support/replica.py)."""
    with running_replica_pair() as pair:
        yield pair
