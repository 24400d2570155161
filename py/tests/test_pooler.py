"""Issue 16 P1: the issuer behind a pooler (PgBouncer, the stand-in for Supavisor).

Supabase's pooled connection string (Supavisor, transaction mode, port 6543)
is what most hosts use. Here a real PgBouncer (tests/support/pooler.py) sits
between a real ``issuer serve`` process and the test database, and many
concurrent clients post usage: no 5xx, no hang, every 200 in the ledger once.

The issuer logs in as a dedicated login role whose default role in this
database is ``service_role`` (``alter role ... set role service_role``), the
set-up docs/operations.md prescribes behind a pooler: a pooler does not carry
the ``-c role=`` startup option.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import issuer_serve
from support.pooler import Pooler, pgbouncer
from support.world import World, issuer_env


@pytest.fixture(scope="module")
def pooled_login(world: World) -> Iterator[str]:
    """A login role that *is* service_role in this database (its per-database default)."""
    name = f"issuer_pooled_{uuid.uuid4().hex[:8]}"
    dbname = psycopg.conninfo.conninfo_to_dict(world.db_url)["dbname"]
    ident = sql.Identifier(name)
    world.sql(sql.SQL("create role {} login noinherit in role service_role").format(ident))
    world.sql(
        sql.SQL("alter role {} in database {} set role = service_role").format(
            ident, sql.Identifier(str(dbname))
        )
    )
    world.sql(
        sql.SQL("alter role {} in database {} set statement_timeout = '15s'").format(
            ident, sql.Identifier(str(dbname))
        )
    )
    try:
        yield name
    finally:
        world.sql(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (name,)
        )
        world.sql(sql.SQL("drop role {}").format(ident))


def _dbname(world: World) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(world.db_url)["dbname"])


@pytest.fixture(scope="module")
def transaction_bouncer(world: World, pooled_login: str) -> Iterator[Pooler]:
    # Dropping ``options`` (instead of refusing the connection, PgBouncer's
    # default) lets the issuer of before issue 16 connect at all, and so show
    # the prepared-statement failures this test was written against.
    with pgbouncer(
        world.db_url,
        mode="transaction",
        users=[pooled_login],
        ignore_startup_parameters=["options"],
    ) as b:
        yield b


@pytest.fixture(scope="module")
def session_bouncer(world: World, pooled_login: str) -> Iterator[Pooler]:
    with pgbouncer(world.db_url, mode="session", users=[pooled_login], pool_size=40) as b:
        yield b


def _hammer(
    world: World, base_url: str, org: str, *, clients: int, per_client: int
) -> tuple[Counter[str], list[str]]:
    """``clients`` concurrent clients, each posting ``per_client`` usages with its own keys.

    Returns the status counts ("timeout" for a request that hung past 30 s)
    and the idempotency keys that were answered 200.
    """
    users = [world.user() for _ in range(min(clients, 8))]
    for u in users:
        world.seat(org, u)
    tokens = [world.extension_token(u, org) for u in users]

    def client(i: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        with httpx.Client(base_url=base_url, timeout=30) as http:
            for j in range(per_client):
                key = f"p1-{uuid.uuid4().hex}-{i}-{j}"
                try:
                    r = http.post(
                        "/api/extension/usage",
                        json={"amount": 1, "description": "pooled"},
                        headers={**headers, "Idempotency-Key": key},
                    )
                    out.append((str(r.status_code), key))
                except httpx.TimeoutException:
                    out.append(("timeout", key))
                except httpx.TransportError as exc:
                    out.append((type(exc).__name__, key))
        return out

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = [x for chunk in pool.map(client, range(clients)) for x in chunk]
    return Counter(s for s, _ in results), [k for s, k in results if s == "200"]


def _assert_ledger_exactly_once(world: World, org: str, ok_keys: list[str]) -> None:
    rows = world.sql(
        "select t.idempotency_key from public.credit_transactions t "
        "join public.organizations o on o.id = t.organization_id "
        "where o.clerk_org_id = %s and t.kind = 'deduction'",
        (org,),
    )
    ledger_keys = [r[0] for r in rows]
    assert len(ledger_keys) == len(ok_keys)
    assert sorted(ledger_keys) == sorted(ok_keys)
    assert world.consistency_problems() == []


def _usage_through(
    world: World,
    fake_clerk: FakeClerk,
    bouncer: Pooler,
    mode: str,
    login: str,
    tmp_path: Path,
    clients: int,
) -> None:
    """``clients`` threads on POST /api/extension/usage through ``bouncer``: all 200, ledger exact."""
    env = issuer_env(bouncer.url(_dbname(world), user=login), fake_clerk, DATABASE_POOLER=mode)
    org = world.org(pool=10_000)
    with issuer_serve(env, tmp_path) as served:
        statuses, ok_keys = _hammer(world, served.url, org, clients=clients, per_client=4)
        log = served.log()
    assert statuses == Counter({"200": clients * 4}), (statuses, log[-3000:])
    _assert_ledger_exactly_once(world, org, ok_keys)
    assert world.pool_balance(org) == 10_000 - clients * 4


@pytest.mark.parametrize("clients", [16, 64])
def test_P1_transaction_pooler_concurrent_usage_no_5xx_no_hang_ledger_exact(
    world: World,
    fake_clerk: FakeClerk,
    transaction_bouncer: Pooler,
    pooled_login: str,
    tmp_path: Path,
    clients: int,
) -> None:
    _usage_through(
        world, fake_clerk, transaction_bouncer, "transaction", pooled_login, tmp_path, clients
    )


@pytest.mark.parametrize("clients", [16, 64])
def test_P1_session_pooler_concurrent_usage_no_5xx_no_hang_ledger_exact(
    world: World,
    fake_clerk: FakeClerk,
    session_bouncer: Pooler,
    pooled_login: str,
    tmp_path: Path,
    clients: int,
) -> None:
    _usage_through(world, fake_clerk, session_bouncer, "session", pooled_login, tmp_path, clients)


def test_P1_C1_transaction_pooler_coalesced_batches_drain_one_pool_exactly(
    world: World,
    fake_clerk: FakeClerk,
    transaction_bouncer: Pooler,
    pooled_login: str,
    tmp_path: Path,
) -> None:
    """Issue 17 behind PgBouncer (transaction mode), `--workers 2`: the batch RPC
    unprepared, 64 clients on one pool of 200: 200 answered 200, the rest 402,
    the ledger exact, the pool at 0, and batches did form."""
    env = issuer_env(
        transaction_bouncer.url(_dbname(world), user=pooled_login),
        fake_clerk,
        DATABASE_POOLER="transaction",
        USAGE_COALESCING="on",
    )
    org = world.org(pool=200)
    with issuer_serve(env, tmp_path, workers=2) as served:
        statuses, ok_keys = _hammer(world, served.url, org, clients=64, per_client=4)
        log = served.log()
    assert statuses == Counter({"200": 200, "402": 56}), (statuses, log[-3000:])
    _assert_ledger_exactly_once(world, org, ok_keys)
    assert world.pool_balance(org) == 0
    (rows, transactions) = world.sql(
        "select count(*), count(distinct t.created_at) from public.credit_transactions t "
        "join public.organizations o on o.id = t.organization_id "
        "where o.clerk_org_id = %s and t.kind = 'deduction'",
        (org,),
    )[0]
    assert transactions < rows  # rows of one batch share their transaction's now()


def test_P1_pooler_that_drops_options_leaves_superuser_issuer_refuses_to_start(
    world: World, fake_clerk: FakeClerk, tmp_path: Path
) -> None:
    """A pooler that silently drops ``-c role=service_role`` must not leave a superuser."""
    with pgbouncer(
        world.db_url, mode="transaction", users=["postgres"], ignore_startup_parameters=["options"]
    ) as bouncer:
        env = issuer_env(bouncer.url(_dbname(world), user="postgres"), fake_clerk)
        exe = Path(sys.executable).parent / "issuer"
        proc = subprocess.run(
            [str(exe), "serve", "--port", "0"],
            env={**_clean_env(), **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode != 0
    err = proc.stderr
    assert "service_role" in err and "postgres" in err, err
    assert "alter role" in err and "DATABASE_ROLE" in err, err
    assert "Traceback" not in err


def test_P1_each_new_connection_checks_its_role_and_a_wrong_one_is_never_used(
    world: World,
) -> None:
    """Past start-up too: a connection that is not DATABASE_ROLE is discarded (503)."""
    from issuer.errors import DatabaseUnavailable
    from issuer.rpc import PsycopgRpc

    with pgbouncer(
        world.db_url, mode="transaction", users=["postgres"], ignore_startup_parameters=["options"]
    ) as bouncer:
        rpc = PsycopgRpc(
            bouncer.url(_dbname(world), user="postgres"),
            max_size=1,
            acquire_timeout=1.0,
            pooler="transaction",
        )
        try:
            with pytest.raises(DatabaseUnavailable):
                rpc.call("credit_consistency_check", {})
            assert rpc.statements_sent == 0  # nothing ran as the superuser
            assert rpc.role_error is not None
            assert "'postgres'" in rpc.role_error and "service_role" in rpc.role_error
        finally:
            rpc.close()


def test_P1_pooler_that_refuses_options_stops_start_up_with_what_to_set(
    world: World, fake_clerk: FakeClerk
) -> None:
    with pgbouncer(world.db_url, mode="transaction", users=["postgres"]) as bouncer:
        env = issuer_env(bouncer.url(_dbname(world), user="postgres"), fake_clerk)
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "issuer"), "serve", "--port", "0"],
            env={**_clean_env(), **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode != 0
    assert "DATABASE_POOLER=transaction" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SUPABASE_"))}


def test_P1_pooler_mode_is_declared_or_recognised_by_supabase_transaction_port() -> None:
    from issuer.errors import ConfigError
    from issuer.rpc import resolve_pooler

    pooled = "postgresql://issuer_login.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"
    assert resolve_pooler(pooled) == "transaction"
    assert resolve_pooler("postgresql://postgres@db.ref.supabase.co:5432/postgres") == "none"
    assert resolve_pooler("postgresql://postgres@db.ref.supabase.co/postgres") == "none"
    assert resolve_pooler("postgresql://u@h:6432/db", "transaction") == "transaction"
    assert resolve_pooler(pooled, "session") == "session"
    with pytest.raises(ConfigError):
        resolve_pooler(pooled, "bouncy")


def test_P1_direct_connection_still_prepares_and_pooled_one_does_not(
    world: World, transaction_bouncer: Pooler, pooled_login: str
) -> None:
    """Direct: one round trip per RPC on a prepared statement; pooled: none prepared."""
    from issuer.rpc import PsycopgRpc

    direct = PsycopgRpc(world.db_url, max_size=1)
    pooled = PsycopgRpc(
        transaction_bouncer.url(_dbname(world), user=pooled_login), max_size=1, pooler="auto"
    )
    try:
        assert direct.pooler == "none" and pooled.pooler == "none"  # random port: declare it
        pooled.close()
        pooled = PsycopgRpc(
            transaction_bouncer.url(_dbname(world), user=pooled_login),
            max_size=1,
            pooler="transaction",
        )
        for backend in (direct, pooled):
            before = backend.statements_sent
            for _ in range(3):
                backend.call("credit_consistency_check", {})
            assert backend.statements_sent - before == 3
            with backend.pool.connection() as conn:
                prepared = conn.execute(
                    "select count(*) from pg_prepared_statements", prepare=False
                ).fetchone()
                threshold = conn.prepare_threshold
            if backend is direct:
                assert threshold == 0 and prepared == (1,)
            else:
                assert threshold is None
    finally:
        direct.close()
        pooled.close()
