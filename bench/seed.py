"""Rows the deduction benchmarks spend from, and the raw baseline table.

Everything is created the way the system expects it: users, organizations,
subscriptions and seats by plain inserts (constraints and triggers on), credits
only through ``grant_credits``, so ``credit_consistency_check()`` stays
meaningful. Names are deterministic so pgbench scripts can build them.

* ``org_hot`` with members ``user_hot_0`` .. ``user_hot_{n-1}`` (one per pgbench client)
* ``org_s1`` .. ``org_s1000``, each with one member ``user_s<i>``
* ``user_phot``: one personal balance for every client
* ``user_p1`` .. ``user_p1000``: personal balances
* ``bench_raw.pool``: 10,000 rows ``(id, bal)``, the pgbench baselines' table
* ``bench_raw.ledger``: the minimal ledger (its primary key is its only index),
  written by the *minimal ledgered deduction* baselines
"""

from __future__ import annotations

from typing import Any

import psycopg

from bench.pg import connect

SPREAD = 1000
RAW_ROWS = 10_000
HOT_MEMBERS = 64
BALANCE = 1_000_000_000  # never runs dry: 1e9 credits per pool, 1 per deduction

_SEED = """
insert into public.users (clerk_user_id, email)
select 'user_hot_' || g, 'user_hot_' || g || '@bench.invalid' from generate_series(0, %(hot)s - 1) g
union all
select 'user_s' || g, 'user_s' || g || '@bench.invalid' from generate_series(1, %(spread)s) g
union all
select 'user_p' || g, 'user_p' || g || '@bench.invalid' from generate_series(1, %(spread)s) g
union all
select 'user_phot', 'user_phot@bench.invalid';

insert into public.organizations (clerk_org_id, name, stripe_customer_id)
select 'org_hot', 'Hot Org', 'cus_hot'
union all
select 'org_s' || g, 'Org ' || g, 'cus_s' || g from generate_series(1, %(spread)s) g;

insert into public.organization_subscriptions
    (organization_id, stripe_subscription_id, status, is_current,
     current_period_start, current_period_end)
select o.id, 'sub_' || o.clerk_org_id, 'active', true,
       now() - interval '1 day', now() + interval '29 days'
from public.organizations o
where o.clerk_org_id = 'org_hot' or o.clerk_org_id ~ '^org_s[0-9]+$';

insert into public.organization_seats (organization_id, user_id, role, status)
select o.id, u.id, 'member', 'active'
from public.organizations o
join public.users u on u.clerk_user_id like 'user\\_hot\\_%%'
where o.clerk_org_id = 'org_hot'
union all
select o.id, u.id, 'member', 'active'
from generate_series(1, %(spread)s) g
join public.organizations o on o.clerk_org_id = 'org_s' || g
join public.users u on u.clerk_user_id = 'user_s' || g;
"""

_GRANTS = """
select count(*) filter (where (r).ok) from (
    select public.grant_credits(%(balance)s, 'bench seed', null, o.clerk_org_id) as r
    from public.organizations o
    where o.clerk_org_id = 'org_hot' or o.clerk_org_id ~ '^org_s[0-9]+$'
    union all
    select public.grant_credits(%(balance)s, 'bench seed', u.clerk_user_id)
    from public.users u
    where u.clerk_user_id = 'user_phot' or u.clerk_user_id like 'user\\_p%%'
) s
"""

_RAW = """
create schema bench_raw;
create table bench_raw.pool (id int primary key, bal bigint not null);
insert into bench_raw.pool select g, %(balance)s from generate_series(1, %(rows)s) g;
vacuum analyze bench_raw.pool;
create table bench_raw.ledger (
    id bigint generated always as identity primary key,
    pool_id int not null,
    amount bigint not null,
    balance_after bigint not null
);
"""


def seed(url: str) -> None:
    params: dict[str, Any] = {
        "hot": HOT_MEMBERS,
        "spread": SPREAD,
        "balance": BALANCE,
        "rows": RAW_ROWS,
    }
    with connect(url) as conn:
        with conn.transaction():
            for stmt in _SEED.split(";\n\n"):
                conn.execute(stmt, params)
        with conn.transaction():
            conn.execute("set local role service_role")
            granted = conn.execute(_GRANTS, params).fetchone()
        expected = 1 + SPREAD + 1 + SPREAD
        if not granted or granted[0] != expected:
            raise RuntimeError(f"seed: expected {expected} grants, got {granted}")
        for stmt in _RAW.split(";\n"):
            if stmt.strip():
                conn.execute(stmt, params)
        conn.execute("vacuum analyze")


#: Pools each scenario spends from, as a condition on the owner table.
ORG_HOT = "o.clerk_org_id = 'org_hot'"
ORG_SPREAD = "o.clerk_org_id ~ '^org_s[0-9]+$'"
PERSONAL_HOT = "u.clerk_user_id = 'user_phot'"
PERSONAL_SPREAD = "u.clerk_user_id ~ '^user_p[0-9]+$'"


def balance(conn: psycopg.Connection[Any], pools: str) -> int:
    """Sum of the balances of the pools named by ``pools`` (one of the constants above)."""
    if pools.startswith("o."):
        query = (
            "select coalesce(sum(s.credits_balance), 0) from public.organization_subscriptions s "
            f"join public.organizations o on o.id = s.organization_id where s.is_current and {pools}"
        )
    elif pools.startswith("u."):
        query = f"select coalesce(sum(u.credits_balance), 0) from public.users u where {pools}"
    else:
        query = f"select coalesce(sum(bal), 0) from bench_raw.pool where {pools}"
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


#: The minimal ledger of the *minimal ledgered deduction* baselines.
RAW_LEDGER = "bench_raw.ledger"


def ledger_mark(conn: psycopg.Connection[Any], table: str = "public.credit_transactions") -> Any:
    """The newest ledger id (uuid v7 or identity, so ordered): rows after it are new."""
    row = conn.execute(f"select id from {table} order by id desc limit 1").fetchone()
    return None if row is None else row[0]


def ledger_rows_since(
    conn: psycopg.Connection[Any], mark: Any, table: str = "public.credit_transactions"
) -> int:
    if mark is None:
        row = conn.execute(f"select count(*) from {table}").fetchone()
    else:
        row = conn.execute(
            f"select count(*) from {table} where id > %s",
            (mark,),
        ).fetchone()
    return int(row[0]) if row else -1


def transactions_since(conn: psycopg.Connection[Any], mark: Any) -> int:
    """Transactions that wrote the ledger rows after ``mark`` (rows of one
    transaction share its ``now()``, e.g. the deductions of one batch)."""
    query = "select count(distinct created_at) from public.credit_transactions"
    row = (
        conn.execute(query).fetchone()
        if mark is None
        else conn.execute(query + " where id > %s", (mark,)).fetchone()
    )
    return int(row[0]) if row else -1


def consistency_problems(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("select count(*) from public.credit_consistency_check()").fetchone()
    return int(row[0]) if row else -1
