"""Years of ledger: do deductions, the cookbook and VACUUM slow down as the ledger grows?

For each size (default 1 M, 20 M and 50 M rows; ``--ledger-sizes`` in
millions) one database is built the way the analytics scenario builds its
own (``analytics.build``: 1,000 orgs x 5 seated members, a year of rows from
``generate_series``, indexes dropped for the load and rebuilt), then:

* the deduction seed (``seed.seed``: the raw baseline table, 1,000 personal
  balances) and a grant of 1e9 credits to each of the 1,000 orgs *with
  history*, so the org deductions insert into the same ``(organization_id,
  created_at)``, ``(seat_id, created_at)`` and ``(user_id, created_at)``
  index ranges that hold the year of rows;
* deduction throughput with pgbench at 16 clients: org pools with history
  (1,000), personal balances (1,000) and, in the same run, the raw
  spread-update baseline. The ratio ours/baseline is what is compared
  across sizes (the machine is shared; absolute TPS moves with its load);
* every named query of docs/analytics.md, with its literals ('org_acme',
  'cus_acme', 'user_alice') replaced by an org, customer and user of the
  generated data, as ``service_role``;
* VACUUM of ``credit_transactions`` after the loads (what autovacuum does on
  an insert-mostly table), then ``VACUUM (FREEZE)`` (the one-time
  aggressive pass that reads every page not yet frozen), then another load
  and ``VACUUM (FREEZE)`` again (steady state: frozen pages are skipped).

Each database is dropped before the next size is built (disk). The sizes
run smallest first; the "met" column compares each size's deduction ratio
with the smallest size's (>= 0.85 of it: no degradation beyond noise).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from bench import analytics, deduct, pg, seed
from bench.context import Ctx
from bench.report import Result, Row

DBNAME = "bench_ledger"
CLIENTS = 16
COOKBOOK = Path(__file__).resolve().parents[1] / "docs" / "analytics.md"
BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)

#: Org pools that carry the generated year of rows (analytics._SEED names them).
ORG_HISTORY_POOLS = "o.clerk_org_id ~ '^org_a[0-9]+$'"
ORG_HISTORY = deduct.Load(
    "org pools with history (1,000)",
    f"\\set o random(1, {analytics.ORGS})\n"
    f"\\set u {analytics.MEMBERS} * :o\n"
    "select * from public.deduct_credits_pooled('user_a' || :u, 1, 'bench', 'org_a' || :o);\n",
    "service_role",
    ORG_HISTORY_POOLS,
    True,
)
LOADS = [ORG_HISTORY, deduct.LOADS_SPREAD[1]]
BASELINE = deduct.BASE_SPREAD

_GRANT_HISTORY_ORGS = """
select count(*) filter (where (r).ok) from (
    select public.grant_credits(%(balance)s, 'bench seed', null, o.clerk_org_id) as r
    from public.organizations o
    where o.clerk_org_id ~ '^org_a[0-9]+$'
) s
"""

#: Sizes (rows) when --ledger-sizes is not given.
DEFAULT_SIZES = (1_000_000, 20_000_000, 50_000_000)
QUICK_SIZES = (100_000, 1_000_000)


def cookbook() -> list[tuple[str, str]]:
    """(name, sql) of every named block of docs/analytics.md, literals pointed at real rows."""
    out = []
    for body in BLOCK.findall(COOKBOOK.read_text()):
        m = re.match(r"\s*-- name: (\S+)\n", body)
        if not m:
            continue
        query = body[m.end() :].strip().rstrip(";")
        query = (
            query.replace("'org_acme'", "'org_a7'")
            .replace("'cus_acme'", "'cus_a7'")
            .replace("'user_alice'", f"'user_a{7 * analytics.MEMBERS}'")
        )
        out.append((m.group(1), query.replace("%", "%%")))
    return out


def _timed(conn: Any, statement: str) -> float:
    t = time.perf_counter()
    conn.execute(statement)
    return time.perf_counter() - t


def _cookbook_times(url: str) -> list[tuple[str, float, int]]:
    """(name, ms, rows): best of 3 for quick queries, one run for those over 2 s."""
    got = []
    with pg.connect(url) as conn:
        conn.execute("set role service_role")
        conn.execute("set statement_timeout = '600s'")
        for name, query in cookbook():
            t = time.perf_counter()
            rows = conn.execute(query).fetchall()
            best = time.perf_counter() - t
            if best < 2:
                for _ in range(2):
                    t = time.perf_counter()
                    conn.execute(query).fetchall()
                    best = min(best, time.perf_counter() - t)
            got.append((name, best * 1000, len(rows)))
    return got


def _deductions(ctx: Ctx, dctx: Ctx) -> dict[str, tuple[float, float, float, bool, str]]:
    """label -> (ours tps, baseline tps, ratio, correct, detail), median over the runs."""
    deduct.warm_up(dctx, [BASELINE, *LOADS])
    tps: dict[str, list[float]] = {load.label: [] for load in [BASELINE, *LOADS]}
    ratios: dict[str, list[float]] = {load.label: [] for load in LOADS}
    bad: list[str] = []
    for run in range(ctx.config.runs):
        order = [BASELINE, *LOADS] if run % 2 == 0 else [*LOADS, BASELINE]
        got = {}
        for load in order:
            sample = deduct.measure(dctx, load, CLIENTS, None)
            got[load.label] = sample.tps
            tps[load.label].append(sample.tps)
            if not sample.correct:
                bad.append(f"{load.label}: {sample.detail}")
        for load in LOADS:
            base = got[BASELINE.label]
            ratios[load.label].append(got[load.label] / base if base else 0.0)
    return {
        load.label: (
            pg.median(tps[load.label]),
            pg.median(tps[BASELINE.label]),
            pg.median(ratios[load.label]),
            not bad,
            bad[0] if bad else "exact",
        )
        for load in LOADS
    }


def _vacuums(ctx: Ctx, dctx: Ctx, url: str) -> dict[str, float]:
    times = {}
    with pg.connect(url) as conn:
        times["VACUUM after the loads"] = _timed(
            conn, "vacuum (analyze) public.credit_transactions"
        )
        times["VACUUM (FREEZE), first"] = _timed(conn, "vacuum (freeze) public.credit_transactions")
    deduct.measure(dctx, ORG_HISTORY, CLIENTS, None)
    with pg.connect(url) as conn:
        times["VACUUM (FREEZE) again after a load"] = _timed(
            conn, "vacuum (freeze) public.credit_transactions"
        )
    return times


def _sizes(url: str) -> tuple[str, str, int]:
    with pg.connect(url) as conn:
        heap = pg.scalar(conn, "select pg_size_pretty(pg_table_size('public.credit_transactions'))")
        idx = pg.scalar(
            conn, "select pg_size_pretty(pg_indexes_size('public.credit_transactions'))"
        )
        n = pg.scalar(
            conn,
            "select reltuples::bigint from pg_class "
            "where oid = 'public.credit_transactions'::regclass",
        )
    return str(heap), str(idx), int(n or 0)


def ledger_size(ctx: Ctx) -> Result:
    started = time.monotonic()
    sizes = ctx.config.ledger_sizes or (QUICK_SIZES if ctx.config.quick else DEFAULT_SIZES)
    result = Result(
        name="ledger-size",
        title="Deductions, cookbook and VACUUM as the ledger grows "
        f"({', '.join(f'{n / 1e6:g} M' for n in sizes)} rows)",
        baseline_name=f"{BASELINE.label} at the same size, same run, {CLIENTS} clients",
    )
    first_ratio: dict[str, float] = {}
    for n in sizes:
        label = f"{n / 1e6:g} M"
        ctx.console.print(f"[dim]  ledger-size: building {label} rows ...[/dim]")
        url, build_s = analytics.build(ctx, n, DBNAME)
        try:
            seed.seed(url)
            with pg.connect(url) as conn:
                conn.execute("set role service_role")
                granted = pg.scalar(conn, _GRANT_HISTORY_ORGS, {"balance": seed.BALANCE})
            if granted != analytics.ORGS:
                raise RuntimeError(f"ledger-size: {granted} org grants, expected {analytics.ORGS}")
            heap, idx, tuples = _sizes(url)
            result.notes.append(
                f"{label}: {n:,} rows generated and indexed in {build_s:.0f} s "
                f"(analytics.build); heap {heap}, indexes {idx}, reltuples {tuples:,}"
            )
            dctx = Ctx(
                config=ctx.config,
                server=ctx.server,
                dbname=DBNAME,
                url=url,
                workdir=ctx.workdir,
                console=ctx.console,
            )
            ctx.console.print(f"[dim]  ledger-size: {label} deductions ...[/dim]")
            for load_label, (ours, base, ratio, ok, detail) in _deductions(ctx, dctx).items():
                first = first_ratio.setdefault(load_label, ratio)
                rel = ratio / first if first else 0.0
                result.rows.append(
                    Row(
                        scenario=f"{label}: {load_label}",
                        clients=str(CLIENTS),
                        ours=f"{ours:,.0f} TPS",
                        baseline=f"{base:,.0f} TPS",
                        ratio=ratio,
                        target=f"≥ 0.85 × the {sizes[0] / 1e6:g} M ratio",
                        met=rel >= 0.85,
                        correctness="exact" if ok else f"MISMATCH: {detail}",
                        note=f"{rel:.2f} × the ratio at {sizes[0] / 1e6:g} M",
                    )
                )
            ctx.console.print(f"[dim]  ledger-size: {label} cookbook ...[/dim]")
            for name, ms, rows in _cookbook_times(url):
                result.rows.append(
                    Row(
                        scenario=f"{label}: cookbook {name}",
                        clients="1",
                        ours=f"{ms:,.1f} ms",
                        baseline="-",
                        ratio=None,
                        target="-",
                        met=None,
                        correctness="-",
                        note=f"{rows} rows",
                    )
                )
            ctx.console.print(f"[dim]  ledger-size: {label} vacuum ...[/dim]")
            for what, seconds in _vacuums(ctx, dctx, url).items():
                result.rows.append(
                    Row(
                        scenario=f"{label}: {what}",
                        clients="1",
                        ours=f"{seconds:,.2f} s",
                        baseline="-",
                        ratio=None,
                        target="-",
                        met=None,
                        correctness="-",
                    )
                )
        finally:
            from issuer_dev import localdb

            localdb.drop_database(ctx.server.url, DBNAME)
    result.notes.append(
        f"median of {ctx.config.runs} run(s) of {ctx.config.seconds:g} s per deduction load; "
        "ratio = median of the per-run paired ratios against the raw spread update; "
        "cookbook: best of 3 (one run when over 2 s), warm cache"
    )
    result.seconds = time.monotonic() - started
    return result
