"""P3 (issue 16): a read replica for what may be read stale, never for money.

A real streaming replica (``pg_basebackup -R`` of a primary, a second cluster
on another port: support/replica.py). The issuer serves the HTTP API with
``DATABASE_READ_URL`` pointing at the replica; deductions go through the real
app. The analytics report (``issuer credits usage``, issuer.readdb) reads from
the replica, and the tests prove where each statement ran with
``pg_is_in_recovery()`` and ``inet_server_port()`` seen by the read itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import pytest

from issuer.errors import DatabaseUnavailable
from issuer.readdb import ReadConfig, read
from issuer_dev.fake_clerk import FakeClerk
from support.pooler import pgbouncer
from support.replica import ReplicaPair
from support.world import World, make_world

ISSUER = str(Path(sys.executable).parent / "issuer")

USAGE_SQL = """
select usage_date, deductions, net_credits_used
from public.credit_usage_by_org_day
where clerk_org_id = %(org)s
order by usage_date desc
"""
WHERE_SQL = (
    "select pg_is_in_recovery() as in_recovery, inet_server_port() as port, "
    "current_setting('transaction_read_only') as read_only, current_user as who"
)


@pytest.fixture(scope="module")
def rworld(replica_pair: ReplicaPair, fake_clerk: FakeClerk) -> Iterator[World]:
    """The real app on the primary, configured with DATABASE_READ_URL = the replica."""
    world = make_world(
        replica_pair.primary_url, fake_clerk, DATABASE_READ_URL=replica_pair.replica_url
    )
    try:
        yield world
    finally:
        world.close()
        world.issuer.close()


def _org_with_spender(world: World) -> tuple[str, str]:
    org = world.org(pool=100)
    user = world.user()
    world.seat(org, user)
    return org, world.extension_token(user, org)


def _spend(world: World, token: str, amount: int = 1) -> None:
    r = world.client.post(
        "/api/extension/usage",
        json={"amount": amount, "description": "completion"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text


def _deductions(rows: list[dict[str, Any]]) -> int:
    return sum(int(r["deductions"]) for r in rows)


def _config(pair: ReplicaPair, **kw: Any) -> ReadConfig:
    return ReadConfig(**{"primary_url": pair.primary_url, "read_url": pair.replica_url, **kw})


def _cli(pair: ReplicaPair, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")},
        "DATABASE_URL": pair.primary_url,
        "DATABASE_READ_URL": pair.replica_url,
        **env,
    }
    return subprocess.run(
        [ISSUER, "credits", "usage", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_P3_the_harness_is_a_real_streaming_replica(replica_pair: ReplicaPair) -> None:
    with psycopg.connect(replica_pair.primary.url, autocommit=True) as conn:
        senders = conn.execute("select state from pg_stat_replication").fetchall()
    assert senders == [("streaming",)]
    with psycopg.connect(replica_pair.replica.url, autocommit=True) as conn:
        row = conn.execute(
            "select pg_is_in_recovery(), status from pg_stat_wal_receiver"
        ).fetchone()
    assert row == (True, "streaming")


def test_P3_analytics_reads_land_on_the_replica(rworld: World, replica_pair: ReplicaPair) -> None:
    org, token = _org_with_spender(rworld)
    for _ in range(3):
        _spend(rworld, token)
    replica_pair.wait_caught_up()
    config = _config(replica_pair)

    where = read(config, WHERE_SQL)
    assert where.served_by == "replica" and where.fallback_reason is None
    assert where.rows == [
        {
            "in_recovery": True,
            "port": replica_pair.replica.port,
            "read_only": "on",
            "who": "service_role",
        }
    ]
    usage = read(config, USAGE_SQL, {"org": org})
    assert usage.served_by == "replica" and usage.in_recovery is True
    assert usage.lag_seconds is not None and usage.lag_seconds <= config.max_lag
    assert _deductions(usage.rows) == 3

    # The operator's command: the same view, from the replica, said so in its output.
    done = _cli(replica_pair, "--org", org, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["served_by"] == "replica" and report["in_recovery"] is True
    assert _deductions(report["rows"]) == 3
    text = _cli(replica_pair, "--org", org, "--by", "seat")
    assert text.returncode == 0, text.stderr
    assert "read from the replica" in text.stderr and "deductions=3" in text.stdout


def test_P3_writes_never_run_through_the_read_path(
    rworld: World, replica_pair: ReplicaPair
) -> None:
    org, token = _org_with_spender(rworld)
    user = rworld.sql(
        "select u.clerk_user_id from public.users u join public.organization_seats s "
        "on s.user_id = u.id join public.organizations o on o.id = s.organization_id "
        "where o.clerk_org_id = %s",
        (org,),
    )[0][0]
    deduct = "select public.deduct_credits_pooled(%(user)s, 1, 'sneaky', %(org)s)"
    replica_pair.wait_caught_up()
    # On the replica: a hot standby refuses to write at all.
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        read(_config(replica_pair), deduct, {"user": user, "org": org})
    # On the primary (no replica configured, or after a fallback): the read
    # connection is read-only too, so the same call cannot write there either.
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        read(_config(replica_pair, read_url=None), deduct, {"user": user, "org": org})
    assert rworld.pool_balance(org) == 100
    # The issuer's own writes go to the primary and are replicated, never sent to the replica.
    _spend(rworld, token, 2)
    assert rworld.pool_balance(org) == 98
    replica_pair.wait_caught_up()
    with psycopg.connect(replica_pair.replica_url, autocommit=True) as conn:
        row = conn.execute(
            "select s.credits_balance from public.organization_subscriptions s "
            "join public.organizations o on o.id = s.organization_id where o.clerk_org_id = %s",
            (org,),
        ).fetchone()
    assert row is not None and row[0] == 98


def test_P3_replica_down_falls_back_to_the_primary_or_503(
    rworld: World, replica_pair: ReplicaPair
) -> None:
    org, token = _org_with_spender(rworld)
    replica_pair.stop_replica()
    try:
        # Deductions never needed the replica.
        for _ in range(2):
            _spend(rworld, token)
        got = read(_config(replica_pair), USAGE_SQL, {"org": org})
        assert got.served_by == "primary" and got.in_recovery is False
        assert got.fallback_reason is not None and "unreachable" in got.fallback_reason
        assert _deductions(got.rows) == 2
        where = read(_config(replica_pair), WHERE_SQL)
        assert where.rows[0]["port"] == replica_pair.primary.port
        assert where.rows[0]["read_only"] == "on"

        with pytest.raises(DatabaseUnavailable) as refused:
            read(_config(replica_pair, fallback="refuse"), USAGE_SQL, {"org": org})
        assert refused.value.status == 503 and "unreachable" in str(refused.value)

        done = _cli(replica_pair, "--org", org, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["served_by"] == "primary"
        refused_cli = _cli(replica_pair, "--org", org, DATABASE_READ_FALLBACK="refuse")
        assert refused_cli.returncode == 1
        assert "read replica unavailable" in refused_cli.stderr
        assert "Traceback" not in refused_cli.stderr
    finally:
        replica_pair.start_replica()
    replica_pair.wait_caught_up()
    back = read(_config(replica_pair), USAGE_SQL, {"org": org})
    assert back.served_by == "replica" and _deductions(back.rows) == 2


def test_P3_replica_lagging_beyond_the_bound_is_not_read(
    rworld: World, replica_pair: ReplicaPair
) -> None:
    org, token = _org_with_spender(rworld)
    _spend(rworld, token)
    replica_pair.wait_caught_up()
    replica_pair.pause_replay()
    try:
        _spend(rworld, token)
        _spend(rworld, token)
        replica_pair.wait_received_beyond_replay()
        time.sleep(0.6)
        # The replica really is behind: read directly, it still sees one deduction.
        with psycopg.connect(replica_pair.replica_url, autocommit=True) as conn:
            conn.execute("set role service_role")
            stale = conn.execute(USAGE_SQL.replace("%(org)s", "%s"), (org,)).fetchall()
        assert sum(r[1] for r in stale) == 1

        got = read(_config(replica_pair, max_lag=0.5), USAGE_SQL, {"org": org})
        assert got.served_by == "primary" and got.in_recovery is False
        assert got.fallback_reason is not None and "lag" in got.fallback_reason
        assert got.lag_seconds is not None and got.lag_seconds > 0.5
        assert _deductions(got.rows) == 3

        with pytest.raises(DatabaseUnavailable) as refused:
            read(_config(replica_pair, max_lag=0.5, fallback="refuse"), USAGE_SQL, {"org": org})
        assert refused.value.status == 503 and "lag" in str(refused.value)

        lagging = _cli(replica_pair, "--org", org, "--json", DATABASE_READ_MAX_LAG="0.5")
        assert lagging.returncode == 0, lagging.stderr
        report = json.loads(lagging.stdout)
        assert report["served_by"] == "primary" and _deductions(report["rows"]) == 3
        # A generous bound accepts the stale replica, as documented: stale but bounded.
        tolerant = read(_config(replica_pair, max_lag=3600), USAGE_SQL, {"org": org})
        assert tolerant.served_by == "replica" and _deductions(tolerant.rows) == 1
    finally:
        replica_pair.resume_replay()
    replica_pair.wait_caught_up()
    fresh = read(_config(replica_pair, max_lag=0.5), USAGE_SQL, {"org": org})
    assert fresh.served_by == "replica" and _deductions(fresh.rows) == 3


def test_P3_read_settings_are_validated_without_echoing_values() -> None:
    from issuer.errors import ConfigError

    with pytest.raises(ConfigError, match="DATABASE_READ_URL") as bad_url:
        ReadConfig.from_env("postgresql://p/db", {"DATABASE_READ_URL": "mysql://secret@h/db"})
    assert "secret" not in str(bad_url.value)
    with pytest.raises(ConfigError, match="DATABASE_READ_MAX_LAG"):
        ReadConfig.from_env("postgresql://p/db", {"DATABASE_READ_MAX_LAG": "-1"})
    with pytest.raises(ConfigError, match="DATABASE_READ_FALLBACK"):
        ReadConfig.from_env("postgresql://p/db", {"DATABASE_READ_FALLBACK": "maybe"})
    config = ReadConfig.from_env(
        "postgresql://p/db", {"DATABASE_READ_URL": "postgresql://r/db", "DATABASE_READ_MAX_LAG": ""}
    )
    assert config.role == "service_role"
    assert ReadConfig.from_env("postgresql://p/db", {"DATABASE_ROLE": ""}).role is None
    assert (config.read_url, config.max_lag, config.fallback) == (
        "postgresql://r/db",
        30,
        "primary",
    )


def test_P1_P3_a_replica_behind_a_transaction_pooler_is_read_without_startup_options(
    rworld: World, replica_pair: ReplicaPair
) -> None:
    """Supabase's read replicas have pooled connection strings too (P1 x P3).

    PgBouncer refuses the startup option ``options``; before the read path
    followed DATABASE_POOLER, every pooled replica read failed at connect and
    fell back to the primary (or 503 with refuse).
    """
    org, token = _org_with_spender(rworld)
    _spend(rworld, token)
    login = f"issuer_read_{os.getpid()}"
    with psycopg.connect(replica_pair.primary_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("create role {} login noinherit in role service_role").format(
                psycopg.sql.Identifier(login)
            )
        )
        conn.execute(
            psycopg.sql.SQL("alter role {} in database {} set role = service_role").format(
                psycopg.sql.Identifier(login), psycopg.sql.Identifier(replica_pair.dbname)
            )
        )
    replica_pair.wait_caught_up()
    with pgbouncer(
        replica_pair.replica_url, mode="transaction", users=[login, "postgres"]
    ) as bouncer:
        pooled = bouncer.url(replica_pair.dbname, user=login)
        config = _config(replica_pair, read_url=pooled, pooler="transaction", fallback="refuse")
        where = read(config, WHERE_SQL)
        assert where.served_by == "replica"
        assert where.rows == [
            {
                "in_recovery": True,
                "port": replica_pair.replica.port,
                "read_only": "on",
                "who": "service_role",
            }
        ]
        assert _deductions(read(config, USAGE_SQL, {"org": org}).rows) == 1
        # A pooled login that is not service_role is never read through (fail closed).
        superuser = bouncer.url(replica_pair.dbname)
        wrong = _config(replica_pair, read_url=superuser, pooler="transaction", fallback="refuse")
        with pytest.raises(DatabaseUnavailable, match="run as 'postgres'"):
            read(wrong, WHERE_SQL)
