"""What the shared private helpers of the credit path cost (issue 19).

``python -m bench.helper_costs``: µs of backend CPU per call of each helper
next to the inline expression it replaced (a plpgsql loop of 20,000, best of
5), on the migrations of this checkout.

``python -m bench.helper_costs --before DIR``: also an A/B of the credit RPCs,
the migrations in DIR (e.g. ``git archive <rev> supabase | tar -x -C /tmp/x``,
then ``/tmp/x/supabase/migrations``) against this checkout's: one cluster, two
databases, each case run over M distinct orgs in one rolled-back transaction,
the two databases interleaved, best of R rounds. "authorize + capture" needs
migrations that have holds (issue 20) on both sides.

Backend CPU comes from ``/proc/<backend pid>/schedstat`` (time on CPU, in ns),
so time spent waiting for a core on a busy machine does not count. Linux only;
the benchmark cluster runs as a local child process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg

from issuer_dev import localdb, migrations

LOOP = 20_000
HELPERS = {
    "loop alone": "v_b := v_s is not null",
    "inline: v_s is distinct from 'active'": "v_b := v_s is distinct from 'active'",
    "private.seat_allows_spending(v_s)": "v_b := not private.seat_allows_spending(v_s)",
    "inline: jsonb_build_object (10 keys)": (
        "v_j := pg_catalog.jsonb_build_object('pool', 'organization', 'clerk_org_id', v_s, "
        "'organization_id', v_u, 'organization_name', v_s, 'stripe_customer_id', v_s, "
        "'organization_subscription_id', v_u, 'seat_id', v_u, 'seat_role', v_s, "
        "'clerk_user_id', v_s, 'context', v_j0)"
    ),
    "private.org_attribution_metadata(...) || 2 keys": (
        "v_j := private.org_attribution_metadata(v_s, v_u, v_s, v_s, v_u, v_u, v_s) "
        "|| pg_catalog.jsonb_build_object('clerk_user_id', v_s, 'context', v_j0)"
    ),
    "private.org_attribution_metadata(...)": (
        "v_j := private.org_attribution_metadata(v_s, v_u, v_s, v_s, v_u, v_u, v_s)"
    ),
    "jsonb_populate_record(org_attribution, metadata)": (
        "v_a := pg_catalog.jsonb_populate_record(null::public.org_attribution, "
        "private.org_attribution_metadata(v_s, v_u, v_s, v_s, v_u, v_u, v_s))"
    ),
    "inline: row(...)::org_attribution": (
        "v_a := row('organization', v_s, v_u, v_s, v_s, v_u, v_u, v_s)::public.org_attribution"
    ),
    "inline: row(false, ...)::credit_result": (
        "v_r := row(false, 'organization', 'insufficient_credits', null, null, v_n, false)"
        "::public.credit_result"
    ),
    "private.credit_refusal(..., v_balance)": (
        "v_r := private.credit_refusal('organization', 'insufficient_credits', v_n)"
    ),
    "private.credit_refusal(constants)": (
        "v_r := private.credit_refusal('organization', 'no_active_seat')"
    ),
}

RPCS = {
    "deduct org, no key": "perform public.deduct_credits_pooled('u' || i, 1, 'd', 'o' || i)",
    "deduct org, key": (
        "perform public.deduct_credits_pooled('u' || i, 1, 'd', 'o' || i, 'k' || i)"
    ),
    "deduct personal, key": (
        "perform public.deduct_credits_pooled('u' || i, 1, 'd', null, 'k' || i)"
    ),
    "grant org": "perform public.grant_credits(1, 'g', null, 'o' || i)",
    "refusal no_active_seat": "perform public.deduct_credits_pooled('r' || i, 1, 'd', 'o' || i)",
    "resolve_org_attribution": "perform public.resolve_org_attribution('u' || i, 'o' || i)",
    "authorize + capture org (the pair)": (
        "perform public.capture_credits("
        "(public.authorize_credits('u' || i, 1, 'd', 'o' || i)).hold_id, 'u' || i, 1)"
    ),
    "batch of 16 (per element)": (
        "perform count(*) from public.deduct_credits_pooled_batch('o' || i, (select "
        "jsonb_agg(jsonb_build_object('clerk_user_id', 'u' || i, 'amount', 1, "
        "'description', 'd')) from generate_series(1, 16)))"
    ),
}


def seed(m: int) -> str:
    return f"""
insert into public.users (clerk_user_id, credits_balance)
select 'u' || g, 1e9 from generate_series(1, {m}) as g;
insert into public.users (clerk_user_id) select 'r' || g from generate_series(1, {m}) as g;
insert into public.organizations (clerk_org_id, name)
select 'o' || g, 'Org ' || g from generate_series(1, {m}) as g;
insert into public.organization_subscriptions
    (organization_id, status, credits_balance, current_period_start, current_period_end)
select id, 'active', 1e9, now(), now() + interval '30 days' from public.organizations;
insert into public.organization_seats (organization_id, user_id, role, status)
select o.id, u.id, 'member', 'active' from public.organizations as o
join public.users as u on u.clerk_user_id = 'u' || substr(o.clerk_org_id, 2);
insert into public.organization_seats (organization_id, user_id, role, status)
select o.id, u.id, 'member', 'revoked' from public.organizations as o
join public.users as u on u.clerk_user_id = 'r' || substr(o.clerk_org_id, 2);
-- A deployed credit_holds keeps a day of finished holds (bench/holds.py, steady state).
do $steady$ begin
    if pg_catalog.to_regclass('public.credit_holds') is not null then
        insert into public.credit_holds (
            pool, user_id, organization_id, organization_subscription_id, seat_id, amount,
            available_after, expires_at, state, released_at, description
        )
        select 'organization', s.user_id, s.organization_id, sub.id, s.id, 1, 0,
            now() - interval '1 minute', 'voided', now() - interval '1 minute', 'steady state'
        from public.organization_seats as s
        join public.organization_subscriptions as sub on sub.organization_id = s.organization_id
        cross join generate_series(1, 10) as g;
    end if;
end $steady$;
analyze;
"""


def cpu_ns(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("select pg_backend_pid()").fetchone()
    assert row is not None
    with open(f"/proc/{row[0]}/schedstat") as f:
        return int(f.read().split()[0])


def database(server_url: str, name: str, folder: Path) -> psycopg.Connection[tuple[object, ...]]:
    url = localdb.create_database(server_url, name)
    migrations.apply_bootstrap(url)
    migrations.migrate(url, folder)
    return psycopg.connect(url, autocommit=True)


def helper_costs(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    best = dict.fromkeys(HELPERS, float("inf"))
    for _ in range(5):
        for name, expr in HELPERS.items():
            body = (
                "do $$ declare i int; v_s text := 'active'; v_b boolean; "
                "v_u uuid := gen_random_uuid(); v_j jsonb; v_j0 jsonb := '{}'; v_n numeric := 5; "
                f"v_r public.credit_result; v_a public.org_attribution; begin for i in 1..{LOOP} loop {expr}; end loop; end $$"
            )
            conn.execute(body)  # plans cached
            t = cpu_ns(conn)
            conn.execute(body)
            best[name] = min(best[name], (cpu_ns(conn) - t) / LOOP / 1e3)
    for name, us in best.items():
        print(f"{name:50s} {us:6.2f} µs/call")


def ab(conns: dict[str, psycopg.Connection[tuple[object, ...]]], m: int, rounds: int) -> None:
    best = {(k, n): float("inf") for k in RPCS for n in conns}
    for _ in range(rounds):
        for k, stmt in RPCS.items():
            for n, conn in conns.items():
                body = f"do $$ declare i int; begin for i in 1..{m} loop {stmt}; end loop; end $$"
                conn.execute("begin")
                conn.execute(body.replace(f"1..{m}", "1..50"))  # plans cached
                conn.execute("rollback")
                conn.execute("begin")
                t = cpu_ns(conn)
                conn.execute(body)
                t = cpu_ns(conn) - t
                conn.execute("rollback")
                per = t / m / 1e3 / (16 if "per element" in k else 1)
                best[(k, n)] = min(best[(k, n)], per)
    for k in RPCS:
        old, new = best[(k, "before")], best[(k, "after")]
        print(f"{k:28s} before {old:7.1f} µs  after {new:7.1f} µs  ({new - old:+6.1f} µs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, help="migrations folder to compare against")
    ap.add_argument("--orgs", type=int, default=2000, help="A/B: calls per round (M)")
    ap.add_argument("--rounds", type=int, default=5, help="A/B: rounds (R), best kept")
    args = ap.parse_args()
    here = migrations.migrations_dir()
    with localdb.postgres(use_env=False) as srv:
        after = database(srv.url, "helpers_after", here)
        helper_costs(after)
        if args.before:
            before = database(srv.url, "helpers_before", args.before)
            for conn in (before, after):
                conn.execute(seed(args.orgs))
            print()
            ab({"before": before, "after": after}, args.orgs, args.rounds)


if __name__ == "__main__":
    main()
