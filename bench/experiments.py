"""Variants of the deduction, to explain the gap to the raw update.

Not part of the default run: ``python -m bench --scenario experiments``.

Table 1, server time per call at one client (``pg_stat_statements``, so the
commit's fsync is not in it): the raw update; the **ledger floor** (no
function at all: one plain SQL statement doing the same ``update ...
returning`` + ledger ``insert`` the RPC ends with, the ids known in advance:
what any deduction writing this ledger row costs); the RPC as migrated; the
RPC rewritten as one statement (``bench/sql/variants.sql``); the RPC with an
idempotency key; and ``resolve_org_attribution`` as migrated (plpgsql) and as
it was first written (language sql).

Table 2, hot org pool at 1 / 16 / 64 clients against the raw hot-row update
measured next to each variant: the RPC (prepared, ``-M simple``, with a key),
the one-statement variant, the ledger floor, the same two writes in either
order (``deduct_ledger_last`` / ``deduct_ledger_first`` in
``bench/sql/variants.sql``: what ``balance_after`` costs, since only a ledger
row written after the update can know it), and the RPC and the floor again in
copies of the database
whose ledger has no foreign keys, then no foreign keys and no secondary
indexes: what those cost while the row lock is held.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench import pg, seed
from bench.context import Ctx
from bench.deduct import BASE_HOT, ORG_HOT, ORG_SPREAD, Load, Sample, measure
from bench.report import Result, Row

VARIANTS_SQL = Path(__file__).resolve().parent / "sql" / "variants.sql"

FLOOR_SETUP = """
create schema if not exists bench_exp;
create table bench_exp.hot_members as
select replace(u.clerk_user_id, 'user_hot_', '')::int as client_id,
       u.id as user_id, st.id as seat_id, o.id as org_id, s.id as sub_id
from public.users u
join public.organization_seats st on st.user_id = u.id
join public.organizations o on o.id = st.organization_id and o.clerk_org_id = 'org_hot'
join public.organization_subscriptions s on s.organization_id = o.id and s.is_current;
create unique index on bench_exp.hot_members (client_id);
analyze bench_exp.hot_members;
"""

FLOOR = """
with m as (
    select user_id, seat_id, org_id, sub_id from bench_exp.hot_members where client_id = :client_id
),
debited as (
    update public.organization_subscriptions as sub
    set credits_balance = sub.credits_balance - 1
    from m
    where sub.id = m.sub_id and sub.credits_balance >= 1
    returning sub.credits_balance, sub.current_period_start, sub.current_period_end,
        m.user_id, m.seat_id, m.org_id, m.sub_id
)
insert into public.credit_transactions (
    pool, kind, user_id, organization_id, organization_subscription_id, seat_id,
    amount, balance_after, description, subscription_period_start, subscription_period_end,
    metadata
)
select 'organization', 'deduction', d.user_id, d.org_id, d.sub_id, d.seat_id,
    -1, d.credits_balance, 'bench', d.current_period_start, d.current_period_end,
    jsonb_build_object(
        'pool', 'organization', 'clerk_org_id', 'org_hot', 'organization_id', d.org_id,
        'organization_name', 'Hot Org', 'stripe_customer_id', 'cus_hot',
        'organization_subscription_id', d.sub_id, 'seat_id', d.seat_id,
        'seat_role', 'member', 'clerk_user_id', 'user_hot_' || :client_id,
        'context', '{}'::jsonb)
from debited as d;
"""

SINGLE = "bench_exp.deduct_single_statement"

LEDGER_LAST = "select bench_exp.deduct_ledger_last(:client_id);\n"
LEDGER_FIRST = "select bench_exp.deduct_ledger_first(:client_id);\n"

WITH_KEY = (
    "\\set k random(1, 1000000000000)\n"
    "select * from public.deduct_credits_pooled("
    "'user_hot_' || :client_id, 1, 'bench', 'org_hot', 'k' || :client_id || '-' || :k);\n"
)

ATTRIBUTION = (
    f"\\set o random(1, {seed.SPREAD})\n"
    "select pg_catalog.to_jsonb(public.resolve_org_attribution('user_s' || :o, 'org_s' || :o));\n"
)

DROP_FKS = """
select format('alter table public.credit_transactions drop constraint %I', conname)
from pg_constraint
where conrelid = 'public.credit_transactions'::regclass and contype = 'f'
"""

DROP_INDEXES = """
select format('drop index %s', indexrelid::regclass)
from pg_index
where indrelid = 'public.credit_transactions'::regclass and not indisprimary
"""


def _clone(ctx: Ctx, name: str, drops: list[str]) -> Ctx:
    with pg.connect(ctx.server.url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{ctx.dbname}"')
    url = ctx.url.rsplit("/", 1)[0] + "/" + name
    with pg.connect(url) as conn:
        for query in drops:
            for (stmt,) in conn.execute(query).fetchall():
                conn.execute(stmt)
    return dataclasses.replace(ctx, dbname=name, url=url)


def _setup(ctx: Ctx) -> None:
    with pg.connect(ctx.url) as conn:
        for stmt in FLOOR_SETUP.split(";\n"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute(VARIANTS_SQL.read_text())


def _server_time(ctx: Ctx, load: Load, seconds: float) -> tuple[float, float]:
    """(server µs per statement, WAL bytes per transaction) at one client.

    Server time from pg_stat_statements (the commit is not in it); WAL from the
    insert position before and after the run, divided by the transactions.
    """
    with pg.connect(ctx.url) as conn:
        conn.execute("select pg_stat_statements_reset()")
        lsn0 = pg.scalar(conn, "select pg_current_wal_insert_lsn()")
    res = pg.pgbench(
        ctx.server,
        ctx.dbname,
        load.script,
        clients=1,
        seconds=seconds,
        role=load.role,
        mode=load.mode,
        workdir=ctx.workdir,
    )
    with pg.connect(ctx.url) as conn:
        us = pg.scalar(
            conn,
            "select 1000 * sum(total_exec_time) / nullif(sum(calls), 0) "
            "from pg_stat_statements where calls >= %s and query not like '%%pg_stat%%'",
            (max(1, res.transactions // 2),),
        )
        wal = pg.scalar(conn, "select pg_current_wal_insert_lsn() - %s::pg_lsn", (lsn0,))
    return float(us or 0), float(wal or 0) / max(1, res.transactions)


LOCKS = """
select count(distinct relation) filter (where locktype = 'relation'),
       count(*) filter (where locktype = 'relation' and not fastpath)
from pg_catalog.pg_lock_status()
where pid = pg_catalog.pg_backend_pid()
"""


def lock_footprint(ctx: Ctx, call: str) -> tuple[int, int]:
    """(relations locked, relation locks outside the fast path) by one call, plans warm."""
    with pg.connect(ctx.url) as conn:
        for _ in range(12):  # past the custom-plan phase of every cached plan
            with conn.transaction():
                conn.execute("set local role service_role")
                conn.execute(call)
        with conn.transaction():
            conn.execute("set local role service_role")
            conn.execute(call)
            row = conn.execute(LOCKS).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def cpu_table(ctx: Ctx) -> Result:
    spread_single = ORG_SPREAD.replace("public.deduct_credits_pooled", SINGLE)
    hot_single = ORG_HOT.replace("public.deduct_credits_pooled", SINGLE)
    loads = [
        BASE_HOT,
        Load("ledger floor (plain SQL)", FLOOR, None, seed.ORG_HOT, True),
        Load("deduct_credits_pooled, hot org", ORG_HOT, "service_role", seed.ORG_HOT, True),
        Load("ledger last (two statements)", LEDGER_LAST, None, seed.ORG_HOT, True),
        Load("ledger first (no balance_after)", LEDGER_FIRST, None, seed.ORG_HOT, True),
        Load("  as one statement (variant)", hot_single, "service_role", seed.ORG_HOT, True),
        Load("deduct_credits_pooled, 1,000 orgs", ORG_SPREAD, "service_role", "", True),
        Load("  as one statement (variant)", spread_single, "service_role", "", True),
        Load("deduct_credits_pooled with key", WITH_KEY, "service_role", seed.ORG_HOT, True),
        Load(
            "deduct_credits_pooled, custom plans",
            ORG_SPREAD,
            "service_role -c plan_cache_mode=force_custom_plan",
            "",
            True,
        ),
        Load("resolve_org_attribution (plpgsql)", ATTRIBUTION, "service_role", "", False),
        Load(
            "  as language sql (before)",
            ATTRIBUTION.replace(
                "public.resolve_org_attribution", "bench_exp.resolve_org_attribution_sql"
            ),
            "service_role",
            "",
            False,
        ),
    ]
    times: dict[int, list[float]] = defaultdict(list)
    wal: dict[int, list[float]] = defaultdict(list)
    for _ in range(ctx.config.runs):
        for i, load in enumerate(loads):
            t, w = _server_time(ctx, load, ctx.config.seconds)
            times[i].append(t)
            wal[i].append(w)
    result = Result(
        name="experiments-cpu",
        title="Server time per call, one client (pg_stat_statements; commit not included)",
        baseline_name="raw hot-row update",
    )
    base = pg.median(times[0])
    for i, load in enumerate(loads):
        t = pg.median(times[i])
        result.rows.append(
            Row(
                scenario=load.label,
                clients="1",
                ours=f"{t:,.0f} µs",
                baseline=f"{base:,.0f} µs",
                ratio=t / base if base else None,
                target="-",
                met=None,
                correctness="-",
                note="; ".join(
                    x
                    for x in (pg.spread_note(times[i]), f"WAL {pg.median(wal[i]):,.0f} B/call")
                    if x
                ),
            )
        )
    for label, call in (
        ("org pool", "select public.deduct_credits_pooled('user_s1', 1, 'bench', 'org_s1')"),
        ("personal", "select public.deduct_credits_pooled('user_p1', 1, 'bench')"),
    ):
        rels, slow = lock_footprint(ctx, call)
        result.notes.append(
            f"deduct_credits_pooled ({label}) locks {rels} relations per call, {slow} of the "
            "relation locks outside the 16 fast-path slots (through the shared lock table)"
        )
    result.notes.append(
        "custom plans: the same call with plan_cache_mode = force_custom_plan, i.e. planned "
        "every time; the default (auto) runs on cached generic plans"
    )
    return result


def hot_table(ctx: Ctx) -> Result:
    rpc = Load("deduct_credits_pooled", ORG_HOT, "service_role", seed.ORG_HOT, True)
    simple = dataclasses.replace(rpc, label="deduct_credits_pooled -M simple", mode="simple")
    keyed = Load("deduct_credits_pooled with key", WITH_KEY, "service_role", seed.ORG_HOT, True)
    floor = Load("ledger floor (plain SQL)", FLOOR, None, seed.ORG_HOT, True)
    single = Load(
        "deduct as one statement (variant)",
        ORG_HOT.replace("public.deduct_credits_pooled", SINGLE),
        "service_role",
        seed.ORG_HOT,
        True,
    )
    last = Load("ledger last (two statements)", LEDGER_LAST, None, seed.ORG_HOT, True)
    first = Load("ledger first (no balance_after)", LEDGER_FIRST, None, seed.ORG_HOT, True)
    plans: list[tuple[Ctx, str, list[Load]]] = [
        (ctx, "", [rpc, simple, keyed, single, floor, last, first])
    ]
    no_fk = _clone(ctx, "bench_nofk", [DROP_FKS])
    no_idx = _clone(ctx, "bench_noidx", [DROP_FKS, DROP_INDEXES])
    plans.append((no_fk, ", ledger without FKs", [rpc, floor]))
    plans.append((no_idx, ", ledger without FKs and secondary indexes", [rpc, floor]))

    clients = [1, 16, 64]
    samples: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    ratios: dict[tuple[str, int], list[float]] = defaultdict(list)
    waits: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for _run in range(ctx.config.runs):
        for c in clients:
            for env, suffix, loads in plans:
                base = measure(env, BASE_HOT, c, None)
                for load in loads:
                    key = (load.label + suffix, c)
                    s = measure(env, load, c, waits[key] if c == 64 else None)
                    samples[key].append(s)
                    ratios[key].append(s.tps / base.tps if base.tps else 0)
    result = Result(
        name="experiments-hot",
        title="Hot org pool: where the gap to the raw update comes from",
        baseline_name="raw hot-row update, measured next to each variant in the same database",
    )
    for _env, suffix, loads in plans:
        for load in loads:
            label = load.label + suffix
            for c in clients:
                ss = samples[(label, c)]
                r = pg.median(ratios[(label, c)])
                waits_note = f"; waits {_top(waits[(label, c)])}" if c == 64 else ""
                result.rows.append(
                    Row(
                        scenario=label,
                        clients=str(c),
                        ours=f"{pg.median([s.tps for s in ss]):,.0f} TPS",
                        baseline="(same run)",
                        ratio=r,
                        target="≥ 0.8×",
                        met=r >= 0.8,
                        correctness="exact" if all(s.correct for s in ss) else "MISMATCH",
                        note=pg.spread_note([s.tps for s in ss]) + waits_note,
                    )
                )
    return result


def experiments(ctx: Ctx) -> list[Result]:
    started = time.monotonic()
    _setup(ctx)
    cpu = cpu_table(ctx)
    cpu.seconds = time.monotonic() - started
    started = time.monotonic()
    hot = hot_table(ctx)
    hot.seconds = time.monotonic() - started
    return [cpu, hot]


def _top(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return "-"
    return ", ".join(f"{e} {100 * k / total:.0f}%" for e, k in counts.most_common(3))
