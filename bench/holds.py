"""Holds (issue 20, H1): authorize + capture against one deduction, in the same run.

One pgbench transaction of the hold load is what a streamed completion costs
the database: ``authorize_credits`` (its hold id kept with ``\\gset``), then
``capture_credits`` of the same amount, two calls as the issuer makes them
(two HTTP requests, each its own transaction). The baseline is one
``deduct_credits_pooled`` call. Target: authorize + capture costs at most
2 × a deduction, i.e. a TPS ratio of at least 0.5, on one hot pool and spread
over 1,000 pools.

Correctness per load: the pools' balance fell by exactly the number of
completed transactions (1 each), one ledger row each (captures only; holds
are not ledger rows), no failed transaction; ``credit_consistency_check()``
(which also checks held against the live holds) is empty afterwards.

    python -m bench --scenario holds [--quick]
"""

from __future__ import annotations

from bench import deduct, pg, seed
from bench.context import Ctx
from bench.deduct import Load
from bench.report import Result

HOLD_HOT = (
    "select hold_id from public.authorize_credits("
    "'user_hot_' || :client_id, 1, 'bench', 'org_hot') \\gset\n"
    "select * from public.capture_credits(:hold_id, 'user_hot_' || :client_id, 1);\n"
)
HOLD_SPREAD = (
    f"\\set o random(1, {seed.SPREAD})\n"
    "select hold_id from public.authorize_credits('user_s' || :o, 1, 'bench', 'org_s' || :o) "
    "\\gset\n"
    "select * from public.capture_credits(:hold_id, 'user_s' || :o, 1);\n"
)

DEDUCT_HOT = Load("deduction (1 pool)", deduct.ORG_HOT, "service_role", seed.ORG_HOT, True)
DEDUCT_SPREAD = Load(
    "deduction (1,000 pools)", deduct.ORG_SPREAD, "service_role", seed.ORG_SPREAD, True
)


STEADY_HOLDS = 20_000
"""Finished holds put in ``credit_holds`` before the loads, then ANALYZE.

A deployed table holds a day of finished holds (``purge_expired_holds``'
retention), and its planner statistics say so. A fresh table is empty: for
its first minute (until autovacuum's first ANALYZE) plpgsql's cached plans
may scan it instead of probing the primary key, and a 3-second load would
time that transient, not the steady state (docs/performance.md, holds)."""

STEADY_SQL = f"""
insert into public.credit_holds (
    pool, user_id, organization_id, organization_subscription_id, seat_id, amount,
    available_after, expires_at, state, released_at, description
)
select
    'organization', s.user_id, s.organization_id, sub.id, s.id, 1, 0,
    now() - interval '1 minute', 'voided', now() - interval '1 minute', 'bench: steady state'
from generate_series(1, {STEADY_HOLDS}) as g (i)
cross join lateral (
    select s.* from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    where o.clerk_org_id = 'org_hot' limit 1
) as s
inner join public.organization_subscriptions as sub
    on sub.organization_id = s.organization_id and sub.is_current
"""


def steady_state(ctx: Ctx) -> None:
    """A day's worth of finished holds and fresh statistics, as a deployment has."""
    with pg.connect(ctx.url) as conn:
        conn.execute(STEADY_SQL)
        conn.execute("analyze public.credit_holds")


def holds(ctx: Ctx) -> list[Result]:
    steady_state(ctx)
    hot = deduct.run_group(
        ctx,
        name="holds-hot",
        title="authorize + capture vs one deduction, one hot org pool",
        baseline=DEDUCT_HOT,
        loads=[Load("authorize + capture (1 pool)", HOLD_HOT, "service_role", seed.ORG_HOT, True)],
        clients=[1, 16],
        target=0.5,
    )
    spread = deduct.run_group(
        ctx,
        name="holds-spread",
        title="authorize + capture vs one deduction, 1,000 org pools",
        baseline=DEDUCT_SPREAD,
        loads=[
            Load(
                "authorize + capture (1,000 pools)",
                HOLD_SPREAD,
                "service_role",
                seed.ORG_SPREAD,
                True,
            )
        ],
        clients=[16],
        target=0.5,
    )
    for r in (hot, spread):
        r.notes.append(
            "target ≥ 0.5×: authorize + capture (two calls, two transactions) costs at most "
            "2 × a deduction (issue 20)"
        )
    return [hot, spread]
