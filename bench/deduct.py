"""deduct_credits_pooled against the raw row update, with pgbench.

Hot: every client spends from ONE pool (one org pool, or one user's personal
credits), against ``update ... where id = 1`` on one row. Spread: each
transaction picks one of 1,000 pools at random, against the same update on a
random row of 10,000. Baseline and ours run back to back at each client
count, alternating which goes first, in every run; the ratio is the median
of those paired ratios.

Correctness per load: the pools' balance fell by exactly the number of
transactions pgbench completed (amount 1 each), the ledger gained exactly
that many rows, no transaction failed; after the scenario,
``credit_consistency_check()`` is empty.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from bench import pg, seed
from bench.context import Ctx
from bench.report import Result, Row

RAW_HOT = "update bench_raw.pool set bal = bal - 1 where id = 1 and bal >= 1;\n"
RAW_SPREAD = (
    f"\\set id random(1, {seed.RAW_ROWS})\n"
    "update bench_raw.pool set bal = bal - 1 where id = :id and bal >= 1;\n"
)
ORG_HOT = (
    "select * from public.deduct_credits_pooled("
    "'user_hot_' || :client_id, 1, 'bench', 'org_hot');\n"
)
ORG_SPREAD = (
    f"\\set o random(1, {seed.SPREAD})\n"
    "select * from public.deduct_credits_pooled('user_s' || :o, 1, 'bench', 'org_s' || :o);\n"
)
PERSONAL_HOT = "select * from public.deduct_credits_pooled('user_phot', 1, 'bench');\n"
PERSONAL_SPREAD = (
    f"\\set u random(1, {seed.SPREAD})\n"
    "select * from public.deduct_credits_pooled('user_p' || :u, 1, 'bench');\n"
)
SELECT_1 = "select 1;\n"
BATCH = 16
#: deduct_credits_pooled_batch with BATCH requests (members user_hot_0..15),
#: what the issuer's coalescing would send for one pool.
ORG_HOT_BATCH = (
    "select count(*) from public.deduct_credits_pooled_batch('org_hot', '"
    + json.dumps(
        [
            {"clerk_user_id": f"user_hot_{i}", "amount": 1, "description": "bench"}
            for i in range(BATCH)
        ]
    )
    + "'::jsonb);\n"
)
#: The minimal ledgered deduction: the conditional pool update and an insert
#: into a ledger whose only index is its primary key, as one plain SQL
#: statement (one round trip, like the RPC): the least any design that
#: records each deduction durably, with the balance after it, must do.
MIN_LEDGERED_HOT = (
    "with d as (update bench_raw.pool set bal = bal - 1 where id = 1 and bal >= 1 "
    "returning id, bal) "
    "insert into bench_raw.ledger (pool_id, amount, balance_after) select id, -1, bal from d;\n"
)
MIN_LEDGERED_SPREAD = (
    f"\\set id random(1, {seed.SPREAD})\n"
    "with d as (update bench_raw.pool set bal = bal - 1 where id = :id and bal >= 1 "
    "returning id, bal) "
    "insert into bench_raw.ledger (pool_id, amount, balance_after) select id, -1, bal from d;\n"
)


@dataclass(frozen=True)
class Load:
    label: str
    script: str
    role: str | None
    pools: str
    ledger: bool
    mode: str = "prepared"
    ledger_table: str = "public.credit_transactions"
    per_call: int = 1
    """Deductions per pgbench transaction (the batch RPC): TPS is deductions/s."""


BASE_HOT = Load("raw hot-row update", RAW_HOT, None, "id = 1", False)
BASE_SPREAD = Load("raw spread update (10,000 rows)", RAW_SPREAD, None, "true", False)
MIN_HOT = Load(
    "minimal ledgered deduction (1 row)",
    MIN_LEDGERED_HOT,
    None,
    "id = 1",
    True,
    ledger_table=seed.RAW_LEDGER,
)
MIN_SPREAD = Load(
    "minimal ledgered deduction (1,000 rows)",
    MIN_LEDGERED_SPREAD,
    None,
    f"id <= {seed.SPREAD}",
    True,
    ledger_table=seed.RAW_LEDGER,
)
LOADS_HOT = [
    Load("org pool (1 pool)", ORG_HOT, "service_role", seed.ORG_HOT, True),
    Load(
        f"org pool, batch RPC ({BATCH}/call; deductions/s)",
        ORG_HOT_BATCH,
        "service_role",
        seed.ORG_HOT,
        True,
        per_call=BATCH,
    ),
    Load("personal (1 user)", PERSONAL_HOT, "service_role", seed.PERSONAL_HOT, True),
]
LOADS_SPREAD = [
    Load("org pools (1,000)", ORG_SPREAD, "service_role", seed.ORG_SPREAD, True),
    Load("personal (1,000 users)", PERSONAL_SPREAD, "service_role", seed.PERSONAL_SPREAD, True),
]


@dataclass
class Sample:
    tps: float
    correct: bool
    detail: str
    server_us: float
    cpu_busy: float = 0.0


def measure(ctx: Ctx, load: Load, clients: int, waits: Counter[str] | None) -> Sample:
    """One pgbench run of ``load`` with its before/after bookkeeping."""
    with pg.connect(ctx.url) as conn:
        before = seed.balance(conn, load.pools)
        mark = seed.ledger_mark(conn, load.ledger_table) if load.ledger else None
        conn.execute("select pg_stat_statements_reset()")
    sampler = pg.WaitSampler(ctx.url) if waits is not None else None
    if sampler:
        sampler.__enter__()
    cpu0 = pg.cpu_times()
    try:
        res = pg.pgbench(
            ctx.server,
            ctx.dbname,
            load.script,
            clients=clients,
            seconds=ctx.config.seconds,
            role=load.role,
            mode=load.mode,
            workdir=ctx.workdir,
        )
    finally:
        cpu1 = pg.cpu_times()
        if sampler:
            sampler.__exit__()
            assert waits is not None
            waits.update(sampler.counts)
    with pg.connect(ctx.url) as conn:
        after = seed.balance(conn, load.pools)
        rows = (
            seed.ledger_rows_since(conn, mark, load.ledger_table)
            if load.ledger
            else res.transactions
        )
        server_us = pg.scalar(
            conn,
            "select 1000 * sum(total_exec_time) / nullif(sum(calls), 0) "
            "from pg_stat_statements where calls >= %s and query not like '%%pg_stat%%'",
            (max(1, res.transactions // 2),),
        )
    n = res.transactions * load.per_call
    spent = before - after
    problems = []
    if spent != n:
        problems.append(f"balance fell by {spent}, expected {n}")
    if rows != n:
        problems.append(f"{rows} ledger rows, expected {n}")
    if res.failed or res.aborted:
        problems.append(f"{res.failed} failed transactions")
    return Sample(
        tps=res.tps * load.per_call,
        correct=not problems,
        detail="; ".join(problems) or f"n={n}",
        server_us=float(server_us or 0) / load.per_call,
        cpu_busy=pg.busy_share(cpu0, cpu1),
    )


def warm_up(ctx: Ctx, loads: list[Load]) -> None:
    for load in loads:
        pg.pgbench(
            ctx.server,
            ctx.dbname,
            load.script,
            clients=1,
            seconds=1,
            role=load.role,
            workdir=ctx.workdir,
        )


@dataclass(frozen=True)
class Target:
    """An extra target row: ``load`` against ``baseline`` at these client counts."""

    load: str
    baseline: Load
    ratios: dict[int, float]


def run_group(
    ctx: Ctx,
    *,
    name: str,
    title: str,
    baseline: Load,
    loads: list[Load],
    clients: list[int],
    target: float,
    refs: list[Load] | None = None,
    targets: list[Target] | None = None,
) -> Result:
    """Every load and baseline back to back at each client count, in every run.

    ``refs`` are further baselines measured in the same runs (the minimal
    ledgered deduction); ``targets`` add one row per (load, baseline, clients)
    with its ratio, the median of the per-run paired ratios like the rest.
    """
    started = time.monotonic()
    refs = refs or []
    targets = targets or []
    if ctx.config.clients:
        clients = [c for c in clients if c in ctx.config.clients] or clients
    bases = [baseline, *refs]
    if not ctx.config.quick:
        warm_up(ctx, [*bases, *loads])
    samples: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    ratios: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    waits: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    top = max(clients)
    for run in range(ctx.config.runs):
        for c in clients:
            order = [*bases, *loads] if run % 2 == 0 else [*loads, *bases]
            got: dict[str, Sample] = {}
            for load in order:
                w = waits[(load.label, c)] if c == top else None
                got[load.label] = measure(ctx, load, c, w)
                samples[(load.label, c)].append(got[load.label])
            for base in bases:
                base_tps = got[base.label].tps
                for load in [*loads, *refs]:
                    ratios[(load.label, base.label, c)].append(
                        got[load.label].tps / base_tps if base_tps else 0.0
                    )
    with pg.connect(ctx.url) as conn:
        problems = seed.consistency_problems(conn)
    check = "check empty" if problems == 0 else f"CHECK: {problems} pools differ"

    def correctness(ours: list[Sample], base: list[Sample]) -> str:
        bad = [s.detail for s in ours + base if not s.correct]
        if bad:
            return "MISMATCH: " + bad[0]
        return "exact, check empty" if problems == 0 else check

    result = Result(name=name, title=title, baseline_name=baseline.label)
    for load in [*loads, *refs]:
        for c in clients:
            ours = samples[(load.label, c)]
            base = samples[(baseline.label, c)]
            r = pg.median(ratios[(load.label, baseline.label, c)])
            notes = []
            for label, ss in (("ours", ours), ("baseline", base)):
                spread = pg.spread_note([s.tps for s in ss])
                if spread:
                    notes.append(f"{label} {spread}")
            notes.append(
                f"server time/statement {pg.median([s.server_us for s in ours]):.0f} µs "
                f"vs {pg.median([s.server_us for s in base]):.0f} µs; machine CPU busy "
                f"{100 * pg.median([s.cpu_busy for s in ours]):.0f}% "
                f"vs {100 * pg.median([s.cpu_busy for s in base]):.0f}%"
            )
            if c == top:
                notes.append(f"waits ours: {top_waits(waits[(load.label, c)])}")
            is_ref = load in refs
            result.rows.append(
                Row(
                    scenario=load.label,
                    clients=str(c),
                    ours=f"{pg.median([s.tps for s in ours]):,.0f} TPS",
                    baseline=f"{pg.median([s.tps for s in base]):,.0f} TPS",
                    ratio=r,
                    target="-" if is_ref else f"≥ {target:g}×",
                    met=None if is_ref else r >= target,
                    correctness=correctness(ours, base),
                    note="; ".join(notes),
                )
            )
    for t in targets:
        for c in clients:
            if c not in t.ratios:
                continue
            ours = samples[(t.load, c)]
            base = samples[(t.baseline.label, c)]
            r = pg.median(ratios[(t.load, t.baseline.label, c)])
            goal = t.ratios[c]
            result.rows.append(
                Row(
                    scenario=f"{t.load} vs {t.baseline.label} (issue 17)",
                    clients=str(c),
                    ours=f"{pg.median([s.tps for s in ours]):,.0f} TPS",
                    baseline=f"{pg.median([s.tps for s in base]):,.0f} TPS",
                    ratio=r,
                    target=f"≥ {goal:.1f}×",
                    met=r >= goal,
                    correctness=correctness(ours, base),
                )
            )
    result.notes.append(
        f"waits baseline @ {top}: {top_waits(waits[(baseline.label, top)])} "
        "(share of sampled active backends; CPU = running, no wait event)"
    )
    result.notes.append(
        f"median of {ctx.config.runs} run(s) of {ctx.config.seconds:.0f} s each; "
        "ratio = median of the per-run paired ratios"
    )
    result.seconds = time.monotonic() - started
    return result


def top_waits(counts: Counter[str], n: int = 4) -> str:
    total = sum(counts.values())
    if not total:
        return "no samples"
    return ", ".join(f"{e} {100 * k / total:.0f}%" for e, k in counts.most_common(n))


def hot(ctx: Ctx) -> Result:
    return run_group(
        ctx,
        name="deduct-hot",
        title="deduct_credits_pooled on one hot pool",
        baseline=BASE_HOT,
        loads=LOADS_HOT,
        clients=[1, 16, 64],
        target=0.8,
        refs=[MIN_HOT],
        targets=[
            Target(LOADS_HOT[0].label, BASE_HOT, {16: 1.0, 64: 1.5}),
            Target(LOADS_HOT[0].label, MIN_HOT, {1: 0.8}),
            Target(LOADS_HOT[1].label, BASE_HOT, {16: 1.0, 64: 1.5}),
            Target(LOADS_HOT[1].label, MIN_HOT, {1: 0.8}),
        ],
    )


def spread(ctx: Ctx) -> Result:
    return run_group(
        ctx,
        name="deduct-spread",
        title="deduct_credits_pooled spread over 1,000 pools",
        baseline=BASE_SPREAD,
        loads=LOADS_SPREAD,
        clients=[16, 64],
        target=0.7,
        refs=[MIN_SPREAD],
        targets=[Target(LOADS_SPREAD[0].label, MIN_SPREAD, {16: 0.7, 64: 0.7})],
    )


def roundtrip(ctx: Ctx) -> Result:
    """``select 1`` through pgbench: the round trip every figure above contains."""
    started = time.monotonic()
    lat: list[float] = []
    tps: list[float] = []
    for _ in range(ctx.config.runs):
        res = pg.pgbench(
            ctx.server,
            ctx.dbname,
            SELECT_1,
            clients=1,
            seconds=ctx.config.seconds,
            role="service_role",
            workdir=ctx.workdir,
        )
        lat.append(res.latency_ms * 1000)
        tps.append(res.tps)
    result = Result(name="roundtrip", title="select 1 round trip", baseline_name="-")
    result.rows.append(
        Row(
            scenario="select 1 (pgbench, prepared)",
            clients="1",
            ours=f"{pg.median(lat):.0f} µs",
            baseline="-",
            ratio=None,
            target="-",
            met=None,
            correctness="-",
            note=f"{pg.median(tps):,.0f} TPS",
        )
    )
    result.seconds = time.monotonic() - started
    return result
