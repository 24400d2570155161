"""``python -m bench --scenario seat-caps``: a deduction on an uncapped seat, before and after issue 20.

Issue 20 made every org deduction read the seat's cap and the pool's
low-balance thresholds (two more columns of rows the attribution read
already fetches) and call the cap and alert helpers only when they apply.
This scenario runs, in the same runs and back to back (order alternating),
the migrated ``deduct_credits_pooled`` and the function as it was before
(``bench/sql/deduct_before_caps.sql``, schema ``bench_before``) on the hot
org pool, whose seats have no cap and whose pool has no thresholds. Target:
after / before >= 0.95 (issue 20: "not measurably slower").
"""

from __future__ import annotations

from pathlib import Path

from bench import pg, seed
from bench.context import Ctx
from bench.deduct import ORG_HOT, Load, run_group
from bench.report import Result

BEFORE_SQL = Path(__file__).resolve().parent / "sql" / "deduct_before_caps.sql"

BEFORE_HOT = ORG_HOT.replace("public.deduct_credits_pooled(", "bench_before.deduct_credits_pooled(")
BEFORE = Load("org pool, before issue 20", BEFORE_HOT, "service_role", seed.ORG_HOT, True)
AFTER = Load("org pool, uncapped seat (after)", ORG_HOT, "service_role", seed.ORG_HOT, True)


def seat_caps(ctx: Ctx) -> Result:
    with pg.connect(ctx.url) as conn:
        conn.execute(BEFORE_SQL.read_text())
    return run_group(
        ctx,
        name="seat-caps",
        title="deduct_credits_pooled on an uncapped seat: after issue 20 / before",
        baseline=BEFORE,
        loads=[AFTER],
        clients=[1, 16],
        target=0.95,
    )
