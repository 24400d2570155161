"""The holds chapter (issue 20, H1): a streamed completion held, captured for less.

Told after the caps chapter, on what is left of Acme's pool: Alice's
extension holds 10 before a streamed completion starts (the pool's available
balance drops by 10, its balance does not move), the stream ends costing 3.5,
the capture charges 3.5 and releases the other 6.5, and
``credit_consistency_check()`` (ledger and held) stays empty.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from issuer_dev.demo.cast import ACME, ALICE
from issuer_dev.demo.render import fmt

if TYPE_CHECKING:
    from issuer_dev.demo.story import Story

HELD = 10
COST = Decimal("3.5")


def _held(story: Story) -> Decimal:
    rows = story.env.query(
        "select s.held from public.organization_subscriptions as s "
        "join public.organizations as o on o.id = s.organization_id "
        "where o.clerk_org_id = %s and s.is_current",
        (ACME.clerk_org_id,),
    )
    return Decimal(rows[0]["held"])


def tell(story: Story, number: int) -> None:
    story.say.chapter(number, "Holds: a streamed completion held, captured for less")
    headers = {"Authorization": f"Bearer {story.tokens[ALICE.name]}"}
    before = story.pool_balance()
    r = story.env.http.post(
        "/api/extension/usage/authorize",
        json={"amount": HELD, "description": "streamed completion", "ttl_seconds": 120},
        headers=headers,
    )
    hold = r.json()
    story.check(
        r.status_code == 200 and story.pool_balance() == before and _held(story) == HELD,
        f"Alice's extension holds {HELD} before the stream starts",
        f"HTTP {r.status_code} · available {fmt(hold.get('available'))} · "
        f"balance still {fmt(story.pool_balance())} · expires {hold.get('expires_at')}",
    )
    r = story.env.http.post(
        "/api/extension/usage/capture",
        json={"hold_id": hold.get("hold_id"), "amount": str(COST)},
        headers=headers,
    )
    body = r.json()
    story.check(
        r.status_code == 200 and story.pool_balance() == before - COST and _held(story) == 0,
        f"The stream ends costing {fmt(COST)}: captured {fmt(body.get('amount'))}, "
        f"{fmt(HELD - COST)} released",
        f"HTTP {r.status_code} · remaining {fmt(body.get('remaining'))} · held {fmt(_held(story))}",
    )
    again = story.env.http.post(
        "/api/extension/usage/capture",
        json={"hold_id": hold.get("hold_id"), "amount": "1"},
        headers=headers,
    )
    story.check(
        again.status_code == 409 and again.json().get("error") == "hold_already_captured",
        f"A second capture of the same hold → {again.status_code} {again.json().get('error')}",
        "nothing charged twice",
    )
    problems = story.env.query("select * from public.credit_consistency_check()")
    story.check(
        not problems,
        "credit_consistency_check(): still empty",
        "balances equal their ledgers; held equals the live holds",
    )
