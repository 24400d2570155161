"""The analytics cookbook's usage-per-org-per-day query over a big ledger.

A separate database (``bench_analytics``, same migrations) gets 1,000 orgs with
5 seated members each and N generated ledger rows (10 M by default, 1 M with
``--quick``): 365 days, in time order as a real ledger grows, 90 % org-pool
rows (1 % of them grants, the rest deductions of 1-5 credits) and 10 %
personal rows. The rows bypass the RPCs (one ``insert ... select
generate_series`` as superuser) but respect every check constraint and point
at real users, seats, orgs and subscriptions; foreign keys are not re-checked
row by row (``session_replication_role = replica`` during the load) and the
secondary indexes are built after the load, as ``pg_restore`` would. Balances
are not reconciled with these rows, which is why this is not the deduction
database. ``metadata`` is ``{}``: a smaller table makes the sequential scan
cheaper, so the ratio is conservative.

Indexed vs forced sequential scan: the same query, the second with
``enable_indexscan``, ``enable_indexonlyscan`` and ``enable_bitmapscan`` off.
"""

from __future__ import annotations

import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from bench import pg
from bench.context import Ctx
from bench.report import Result, Row

ORGS = 1000
MEMBERS = 5

COOKBOOK = Path(__file__).resolve().parents[1] / "docs" / "analytics.md"

#: The cookbook's per-org-per-day queries (docs/analytics.md, by their ``-- name:``).
#: If the cookbook is missing, these copies of them are used.
QUERY_NAMES = ("org_usage_by_day", "org_usage_by_day_from_ledger")
FALLBACK = {
    "org_usage_by_day": """
select usage_date, deductions, credits_used, credits_refunded, net_credits_used, active_seats
from public.credit_usage_by_org_day
where clerk_org_id = 'org_acme'
order by usage_date desc
limit 30
""",
    "org_usage_by_day_from_ledger": """
select
    (t.created_at at time zone 'UTC')::date as usage_date,
    count(*) as deductions,
    -sum(t.amount) as credits_used
from public.credit_transactions as t
where
    t.organization_id = (select o.id from public.organizations as o where o.clerk_org_id = 'org_acme')
    and t.kind = 'deduction'
    and t.created_at >= now() - interval '30 days'
group by usage_date
order by usage_date
""",
}


def cookbook_queries() -> dict[str, str]:
    """The named SQL blocks of the cookbook, with 'org_acme' as a parameter."""
    found: dict[str, str] = {}
    try:
        text = COOKBOOK.read_text()
    except OSError:
        text = ""
    for block in re.findall(r"```sql\n(.*?)```", text, flags=re.S):
        m = re.match(r"\s*-- name: (\S+)\n", block)
        if m and m.group(1) in QUERY_NAMES:
            found[m.group(1)] = block[m.end() :]
    queries = {}
    for name in QUERY_NAMES:
        sql = found.get(name, FALLBACK[name]).strip().rstrip(";")
        if "'org_acme'" not in sql:
            raise RuntimeError(f"cookbook query {name} no longer names 'org_acme'")
        queries[name] = sql.replace("%", "%%").replace("'org_acme'", "%(org)s")
    return queries


_SEED = [
    """
    insert into public.users (clerk_user_id, email)
    select 'user_a' || g, null from generate_series(1, %(orgs)s * %(members)s) g
    """,
    """
    insert into public.organizations (clerk_org_id, name, stripe_customer_id)
    select 'org_a' || g, 'Analytics Org ' || g, 'cus_a' || g from generate_series(1, %(orgs)s) g
    """,
    """
    insert into public.organization_subscriptions
        (organization_id, stripe_subscription_id, status, is_current,
         current_period_start, current_period_end)
    select o.id, 'sub_' || o.clerk_org_id, 'active', true,
           now() - interval '400 days', now() + interval '30 days'
    from public.organizations o
    """,
    """
    insert into public.organization_seats (organization_id, user_id, role, status)
    select o.id, u.id, 'member', 'active'
    from generate_series(1, %(orgs)s * %(members)s) g
    join public.organizations o on o.clerk_org_id = 'org_a' || ((g - 1) / %(members)s + 1)
    join public.users u on u.clerk_user_id = 'user_a' || g
    """,
    """
    create table bench_members as
    select (row_number() over (order by u.clerk_user_id) - 1)::int as n,
           o.id as org_id, s.id as sub_id, u.id as user_id, st.id as seat_id,
           s.current_period_start as ps, s.current_period_end as pe
    from public.organization_seats st
    join public.organizations o on o.id = st.organization_id
    join public.organization_subscriptions s on s.organization_id = o.id and s.is_current
    join public.users u on u.id = st.user_id
    """,
    "create unique index on bench_members (n)",
    "analyze bench_members",
]

_LOAD = """
insert into public.credit_transactions (
    id, created_at, pool, kind, user_id, organization_id, organization_subscription_id,
    seat_id, amount, balance_after, description, subscription_period_start,
    subscription_period_end, metadata
)
select
    -- uuid v7 layout: 48-bit milliseconds, version 7, variant 8, then the
    -- row number (unique, and cheaper than random bits)
    (lpad(to_hex((extract(epoch from x.ts) * 1000)::bigint), 12, '0') || '70008000'
        || lpad(to_hex(x.g), 12, '0'))::uuid,
    x.ts,
    (case when x.personal then 'personal' else 'organization' end)::public.credit_pool,
    (case when x.grant_row then 'grant' else 'deduction' end)::public.credit_kind,
    case when x.grant_row and not x.personal then null else m.user_id end,
    case when x.personal then null else m.org_id end,
    case when x.personal then null else m.sub_id end,
    case when x.personal or x.grant_row then null else m.seat_id end,
    case when x.grant_row then 1000 else -(1 + x.g %% 5) end,
    1000000,
    case when x.grant_row then 'bench grant' else 'bench usage' end,
    case when x.personal then null else m.ps end,
    case when x.personal then null else m.pe end,
    '{}'::jsonb
from (
    select
        g,
        now() - interval '365 days' + (g::float8 / %(rows)s) * interval '365 days' as ts,
        (g * 2654435761) %% (%(orgs)s * %(members)s) as n,
        g %% 10 = 0 as personal,
        g %% 100 = 1 as grant_row
    from generate_series(%(lo)s::int, %(hi)s::int) g
) x
join bench_members as m on m.n = x.n
"""

_INDEXES = """
select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
from pg_index i
where i.indrelid = 'public.credit_transactions'::regclass and not i.indisprimary
"""

#: The primary key, and the self-referencing foreign key that depends on it.
_KEYS = """
select conname, pg_get_constraintdef(oid), contype
from pg_constraint
where conrelid = 'public.credit_transactions'::regclass
    and (contype = 'p' or (contype = 'f' and confrelid = conrelid))
order by contype
"""

LOAD_CONNECTIONS = 2


def _parallel(url: str, statements: list[tuple[str, dict[str, Any]]], replica: bool) -> None:
    """Run ``statements`` on LOAD_CONNECTIONS connections, each in its own transaction."""

    def run(stmt: str, params: dict[str, Any]) -> None:
        with pg.connect(url) as conn, conn.transaction():
            conn.execute("set local maintenance_work_mem = '256MB'")
            if replica:
                conn.execute("set local session_replication_role = replica")
            conn.execute(stmt, params)

    with ThreadPoolExecutor(LOAD_CONNECTIONS) as pool:
        for future in [pool.submit(run, stmt, params) for stmt, params in statements]:
            future.result()


def build(ctx: Ctx, rows: int, dbname: str = "bench_analytics") -> tuple[str, float]:
    """Create, seed and load the analytics database ``dbname``; returns (url, seconds).

    Keys and indexes are dropped for the load and built afterwards (a sort
    per index instead of 10 M insertions), the load and the index builds
    run on two connections.
    """
    started = time.monotonic()
    url = pg.new_database(ctx.server, dbname)
    params: dict[str, Any] = {"orgs": ORGS, "members": MEMBERS, "rows": rows}
    with pg.connect(url) as conn:
        for stmt in _SEED:
            conn.execute(stmt, params)
        indexes = conn.execute(_INDEXES).fetchall()
        keys = conn.execute(_KEYS).fetchall()
        with conn.transaction():
            for name, _def, _type in keys:
                conn.execute(f"alter table public.credit_transactions drop constraint {name}")
            for name, _ in indexes:
                conn.execute(f"drop index {name}")
    half = rows // LOAD_CONNECTIONS
    chunks = [
        (i * half + 1, rows if i == LOAD_CONNECTIONS - 1 else (i + 1) * half)
        for i in range(LOAD_CONNECTIONS)
    ]
    _parallel(url, [(_LOAD, {**params, "lo": lo, "hi": hi}) for lo, hi in chunks], True)
    with pg.connect(url) as conn:
        conn.execute("set maintenance_work_mem = '512MB'")
        for name, definition, _type in reversed(keys):  # the primary key first
            conn.execute(
                f"alter table public.credit_transactions add constraint {name} {definition}"
            )
    _parallel(url, [(definition, {}) for _, definition in indexes], False)
    with pg.connect(url) as conn:
        conn.execute("drop table bench_members")
        conn.execute("vacuum (analyze) public.credit_transactions")
    return url, time.monotonic() - started


def plan(conn: psycopg.Connection[Any], query: str, org: str) -> str:
    rows = conn.execute("explain (costs off) " + query, {"org": org}).fetchall()
    text = "\n".join(str(r[0]) for r in rows)
    for node in ("Index Only Scan", "Bitmap Heap Scan", "Index Scan", "Seq Scan"):
        if node in text:
            return node
    return "?"


def run_query(conn: psycopg.Connection[Any], query: str, org: str) -> tuple[float, list[Any]]:
    t = time.perf_counter()
    rows = conn.execute(query, {"org": org}).fetchall()
    return (time.perf_counter() - t) * 1000, rows


FORCE_SEQ = ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan")


def analytics(ctx: Ctx) -> Result:
    started = time.monotonic()
    n = ctx.config.analytics_rows
    result = Result(
        name="analytics",
        title=f"Usage per org per day (docs/analytics.md) over {n / 1e6:g} M ledger rows",
        baseline_name="the same query forced to a sequential scan",
    )
    queries = cookbook_queries()
    url, build_s = build(ctx, n)
    rnd = random.Random(7)
    samples = max(3, ctx.config.runs)
    with pg.connect(url) as conn:
        conn.execute("set role service_role")
        size = pg.scalar(
            conn, "select pg_size_pretty(pg_total_relation_size('public.credit_transactions'))"
        )
        for name, query in queries.items():
            indexed: list[float] = []
            seq: list[float] = []
            ratios: list[float] = []
            plans: set[str] = set()
            mismatches = 0
            days = 0
            run_query(conn, query, "org_a1")  # catalog caches
            for _ in range(samples):
                org = f"org_a{rnd.randint(1, ORGS)}"
                plans.add("indexed: " + plan(conn, query, org))
                t_idx, rows_idx = run_query(conn, query, org)
                for setting in FORCE_SEQ:
                    conn.execute(f"set {setting} = off")
                plans.add("forced: " + plan(conn, query, org))
                t_seq, rows_seq = run_query(conn, query, org)
                for setting in FORCE_SEQ:
                    conn.execute(f"reset {setting}")
                indexed.append(t_idx)
                seq.append(t_seq)
                ratios.append(t_seq / t_idx)
                days = max(days, len(rows_idx))
                if rows_idx != rows_seq or not rows_idx:
                    mismatches += 1
            plans_ok = "forced: Seq Scan" in plans and "indexed: Seq Scan" not in plans
            r = pg.median(ratios)
            result.rows.append(
                Row(
                    scenario=name,
                    clients="1",
                    ours=f"{pg.median(indexed):,.1f} ms",
                    baseline=f"{pg.median(seq):,.0f} ms",
                    ratio=r,
                    target="≥ 50× faster",
                    met=r >= 50,
                    correctness=(
                        f"ok, same {days} rows both ways"
                        if mismatches == 0 and plans_ok
                        else f"MISMATCH: {mismatches} differing results, plans {sorted(plans)}"
                    ),
                    note="; ".join(
                        x
                        for x in (
                            pg.spread_note(indexed),
                            pg.spread_note(seq),
                            ", ".join(sorted(plans)),
                        )
                        if x
                    ),
                )
            )
    result.notes.append(
        f"{n:,} rows generated and indexed in {build_s:.0f} s; ledger with indexes {size}; "
        f"{samples} random orgs per query, each timed once per plan, warm cache; "
        "queries read from docs/analytics.md by name"
    )
    result.seconds = time.monotonic() - started
    return result
