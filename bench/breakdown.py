"""Server time per deduction and where it goes, statement by statement.

``python -m bench --scenario breakdown``: one connection calls
``deduct_credits_pooled`` N times (spread over the 1,000 org pools, no key,
then the same with a key) with ``pg_stat_statements.track = all``, so the
statements inside the function (validation, the attribution read, the
update + ledger insert, nested helpers) are counted too. Prints server time per
call of each statement, the commit's fsync not included (it is not a
statement); the top-level row is the whole call.
"""

from __future__ import annotations

import json
import random
import time

from bench import pg, seed
from bench.context import Ctx
from bench.report import Result, Row

CALLS = 3000

SQL_NO_KEY = "select * from public.deduct_credits_pooled(%s, 1, 'bench', %s)"
SQL_KEY = "select * from public.deduct_credits_pooled(%s, 1, 'bench', %s, %s)"
SQL_BATCH = "select count(*) from public.deduct_credits_pooled_batch(%s, %s::jsonb)"
BATCH = 16
SQL_MIN = (
    "with d as (update bench_raw.pool set bal = bal - 1 where id = %s and bal >= 1 "
    "returning id, bal) "
    "insert into bench_raw.ledger (pool_id, amount, balance_after) select id, -1, bal from d"
)


def _run(
    ctx: Ctx, label: str, keyed: bool, minimal: bool, calls: int, batched: bool = False
) -> list[tuple[str, float, int]]:
    rnd = random.Random(17)
    with pg.connect(ctx.url) as conn:
        conn.execute("set pg_stat_statements.track = 'all'")
        if not minimal:
            conn.execute("set role service_role")
        conn.execute("select pg_stat_statements_reset()")
        for i in range(calls):
            o = rnd.randint(1, seed.SPREAD)
            if batched:
                if i % BATCH:
                    continue
                reqs = [
                    {"clerk_user_id": f"user_hot_{j}", "amount": 1, "description": "bench"}
                    for j in range(BATCH)
                ]
                conn.execute(SQL_BATCH, ("org_hot", json.dumps(reqs)), prepare=True)
            elif minimal:
                conn.execute(SQL_MIN, (o,), prepare=True)
            elif keyed:
                conn.execute(SQL_KEY, (f"user_s{o}", f"org_s{o}", f"k-{label}-{i}"), prepare=True)
            else:
                conn.execute(SQL_NO_KEY, (f"user_s{o}", f"org_s{o}"), prepare=True)
        conn.execute("reset role")
        rows = conn.execute(
            "select regexp_replace(left(query, 200), '\\s+', ' ', 'g'), "
            "1000 * total_exec_time / %s, calls::int "
            "from pg_stat_statements where calls >= %s / 2 and query not like '%%pg_stat%%' "
            "and query not like 'set %%' order by total_exec_time desc limit 14",
            (calls, calls // BATCH if batched else calls),
        ).fetchall()
    return [(str(q), float(us), int(n)) for q, us, n in rows]


#: Expressions deduct_credits_pooled evaluates outside any SQL statement
#: (pg_stat_statements cannot see them): timed in a plpgsql loop.
HELPERS = {
    "loop alone": "i",
    "private.valid_credit_amount(numeric)": "private.valid_credit_amount(i::numeric)",
    "private.valid_credit_context(...)": (
        "private.valid_credit_context('bench' || i, null, jsonb_build_object('a', i))"
    ),
    "jsonb_build_object('a', i)": "jsonb_build_object('a', i)",
    "private.credit_request_fingerprint (with a key only)": (
        "private.credit_request_fingerprint(jsonb_build_array('deduction', 'user_s1', "
        "'org_s1', i::numeric, 'bench', '{}'::jsonb))"
    ),
    "private.uuid_v7()": "private.uuid_v7()",
    "gen_random_uuid()": "gen_random_uuid()",
}
LOOPS = 20000


def helpers(ctx: Ctx) -> Result:
    started = time.monotonic()
    result = Result(
        name="breakdown",
        title=f"expressions outside statements (plpgsql loop of {LOOPS:,}, best of 2)",
        baseline_name="-",
    )
    with pg.connect(ctx.url) as conn:
        conn.execute("create temp table helper_times (name text, us float8)")
        for _ in range(2):
            for name, expr in HELPERS.items():
                conn.execute(
                    "do $$ declare t0 timestamptz; x text; begin t0 := clock_timestamp(); "
                    f"for i in 1..{LOOPS} loop x := ({expr})::text; end loop; "
                    f"insert into helper_times values ($n${name}$n$, "
                    f"extract(epoch from clock_timestamp() - t0) * 1e6 / {LOOPS}); end $$"
                )
        rows = conn.execute(
            "select name, min(us) from helper_times group by name order by 2"
        ).fetchall()
    for name, us in rows:
        result.rows.append(
            Row(
                scenario=str(name),
                clients="1",
                ours=f"{float(us):.2f} µs/call",
                baseline="-",
                ratio=None,
                target="-",
                met=None,
                correctness="-",
            )
        )
    result.seconds = time.monotonic() - started
    return result


def breakdown(ctx: Ctx) -> list[Result]:
    calls = 1000 if ctx.config.quick else CALLS
    out: list[Result] = []
    for label, keyed, minimal, batched in (
        ("no key", False, False, False),
        ("with key", True, False, False),
        ("minimal ledgered", False, True, False),
        (f"batch RPC, {BATCH} per call, one hot pool", False, False, True),
    ):
        started = time.monotonic()
        stats = _run(ctx, label.replace(" ", "-"), keyed, minimal, calls, batched)
        result = Result(
            name="breakdown",
            title=f"server time per deduction by statement ({label}, {calls} calls, 1,000 pools)",
            baseline_name="-",
        )
        for q, us, n in stats:
            result.rows.append(
                Row(
                    scenario=q,
                    clients="1",
                    ours=f"{us:.1f} µs/deduction",
                    baseline="-",
                    ratio=None,
                    target="-",
                    met=None,
                    correctness="-",
                    note=f"calls {n}",
                )
            )
        result.seconds = time.monotonic() - started
        out.append(result)
    out.append(helpers(ctx))
    return out
