"""Chapter: per-seat caps inside the org pool (issue 20, H2).

Alice, Acme's owner, gives Bob his seat back and caps it at 25 credits per
UTC day on the caps page (``/dashboard/caps``, a real form with its CSRF
token). Bob already spent 20 today, and the cap counts that: he spends 4,
then 2 more is refused with 403 ``seat_cap_reached`` ("the pool is not
short"), while Alice, uncapped, still spends from the same pool. Acme tops
up 30 first, so the pool is not the limit.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from issuer_dev.demo.cast import ACME, ALICE, BOB, PEOPLE
from issuer_dev.demo.render import fmt

if TYPE_CHECKING:
    from issuer_dev.demo.story import Story

SEATS_AGAINST_THEIR_CAP_SQL = """
select clerk_user_id, cap, period, spent, remaining
from public.seat_spend_vs_cap
where clerk_org_id = %s
order by spent desc
"""

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def seat_caps(story: Story, number: int) -> None:
    say, env = story.say, story.env
    say.chapter(number, "Caps: Alice caps Bob's seat; the pool is not short")
    env.rpc.grant_credits(
        p_amount=30,
        p_description="Acme top-up",
        p_clerk_org_id=ACME.clerk_org_id,
        p_idempotency_key="stripe:in_acme_0003",
    )
    env.rpc.set_seat_status(
        p_clerk_org_id=ACME.clerk_org_id,
        p_clerk_user_id=BOB.clerk_user_id,
        p_status="active",
    )
    say.step(
        f"{ACME.name} buys 30 more credits; Bob's seat is active again",
        f"pool {fmt(story.pool_balance())}",
    )

    alice = story.session(ALICE)
    page = env.http.get("/dashboard/caps", headers=alice)
    csrf = _CSRF.search(page.text)
    seat = env.query(
        "select s.id::text as id from public.organization_seats s "
        "join public.organizations o on o.id = s.organization_id "
        "join public.users u on u.id = s.user_id "
        "where o.clerk_org_id = %s and u.clerk_user_id = %s",
        (ACME.clerk_org_id, BOB.clerk_user_id),
    )[0]["id"]
    saved = env.http.post(
        "/dashboard/caps/seat",
        data={
            "csrf_token": csrf.group(1) if csrf else "",
            "seat_id": seat,
            "cap": "25",
            "period": "day",
        },
        headers=alice,
    )
    story.check(
        page.status_code == 200 and saved.status_code == 303,
        "Alice (owner) caps Bob's seat at 25 credits a day on /dashboard/caps",
        f"GET {page.status_code} · POST {saved.status_code} · set_seat_cap_as checks she is an owner",
    )

    r = env.http.post(
        "/api/extension-token/generate",
        json={"name": "VS Code", "clerk_org_id": ACME.clerk_org_id},
        headers=story.session(BOB),
    )
    ok = r.status_code == 201 and r.json()["claims"]["pool"] == "organization"
    story.check(ok, "Bob gets a new Acme token", f"HTTP {r.status_code}")
    if ok:
        story.tokens[BOB.name] = r.json()["token"]

    r = story.spend(BOB, 4, "completion")
    story.check(
        r.status_code == 200,
        "Bob spends 4: 20 earlier today + 4 = 24, within his cap of 25",
        f"HTTP {r.status_code} · remaining in the pool {fmt(r.json().get('remaining'))}",
    )
    refused = story.spend(BOB, 2, "completion")
    body: dict[str, Any] = refused.json()
    story.report.capped_status = refused.status_code
    story.report.capped_body = body
    story.check(
        refused.status_code == 403 and body.get("error") == "seat_cap_reached",
        f"Bob spends 2 → {refused.status_code} {body.get('error')}",
        str(body.get("error_description") or ""),
    )
    r = story.spend(ALICE, 10, "completion")
    story.check(
        r.status_code == 200,
        "Alice spends 10: the pool still serves the seats under their caps",
        f"HTTP {r.status_code} · remaining {fmt(r.json().get('remaining'))}",
    )
    names = {p.clerk_user_id: p.name for p in PEOPLE}
    rows = env.query(SEATS_AGAINST_THEIR_CAP_SQL, (ACME.clerk_org_id,))
    say.table(
        f"{ACME.name}: spend against caps (seats_against_their_cap, public.seat_spend_vs_cap)",
        ["seat holder", "cap", "period", "spent", "remaining"],
        [
            (
                names.get(s["clerk_user_id"], s["clerk_user_id"]),
                s["cap"],
                s["period"],
                s["spent"],
                s["remaining"],
            )
            for s in rows
        ],
        numeric=["cap", "spent", "remaining"],
    )
    problems = env.query("select * from public.credit_consistency_check()")
    story.check(
        not problems,
        "credit_consistency_check(): still empty",
        "a refused deduction wrote nothing",
    )
