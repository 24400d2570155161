"""POST /api/extension/usage/authorize, /capture, /void end to end (H1).

Fake Clerk, real database, real app: the same token rules as
``/api/extension/usage`` (A4: the pool from the token only; C3: the seat
re-checked), and the status of every refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from support.world import World


@pytest.fixture(autouse=True, scope="module")
def _unbounded(world: World) -> Iterator[None]:
    """H1's own rules hold most of small shared pools: H4's bounds are lifted here
    (their test: test_api_holds_bounded.py)."""
    world.sql("update private.hold_limits set max_held_share = 1, max_ttl = '1 hour'")
    yield


def _post(
    world: World, token: str, path: str, key: str | None = None, **body: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return world.client.post(path, json=body, headers=headers)


def _held(world: World, clerk_org_id: str) -> Decimal:
    rows = world.sql(
        "select s.held from public.organization_subscriptions as s "
        "join public.organizations as o on o.id = s.organization_id "
        "where o.clerk_org_id = %s and s.is_current",
        (clerk_org_id,),
    )
    return Decimal(rows[0][0])


def test_H1_authorize_capture_for_less_releases_the_rest(world: World) -> None:
    org = world.org(pool=100, name="Acme Inc")
    alice = world.user(personal=5)
    world.seat(org, alice)
    token = world.extension_token(alice, org)

    r = _post(
        world,
        token,
        "/api/extension/usage/authorize",
        amount=20,
        description="stream",
        context={"model": "m"},
    )
    assert r.status_code == 200, r.text
    hold = r.json()
    assert hold["pool"] == "organization" and hold["amount"] == 20 and hold["available"] == 80
    assert hold["replayed"] is False and hold["expires_at"]
    assert world.pool_balance(org) == Decimal(100)
    assert _held(world, org) == Decimal(20)

    r = _post(world, token, "/api/extension/usage/capture", hold_id=hold["hold_id"], amount="7.25")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["amount"] == 7.25 and body["remaining"] == 92.75 and body["replayed"] is False
    assert world.pool_balance(org) == Decimal("92.75")
    assert _held(world, org) == Decimal(0)
    assert world.personal_balance(alice) == Decimal(5)

    again = _post(
        world, token, "/api/extension/usage/capture", hold_id=hold["hold_id"], amount="7.25"
    )
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["transaction_id"] == body["transaction_id"]

    other = _post(world, token, "/api/extension/usage/capture", hold_id=hold["hold_id"], amount=1)
    assert other.status_code == 409
    assert other.json()["error"] == "hold_already_captured"
    assert world.consistency_problems() == []


def test_H1_void_releases_and_refusals_have_their_statuses(world: World) -> None:
    org = world.org(pool=10)
    bob = world.user()
    eve = world.user()
    world.seat(org, bob)
    world.seat(org, eve)
    token = world.extension_token(bob, org)
    eve_token = world.extension_token(eve, org)

    short = _post(world, token, "/api/extension/usage/authorize", amount=11, description="too much")
    assert short.status_code == 402
    assert short.json()["error"] == "insufficient_credits"

    hold = _post(world, token, "/api/extension/usage/authorize", amount=6, description="x").json()
    assert (
        _post(world, token, "/api/extension/usage/authorize", amount=5, description="y").status_code
        == 402
    )

    exceeds = _post(world, token, "/api/extension/usage/capture", hold_id=hold["hold_id"], amount=7)
    assert exceeds.status_code == 422
    assert exceeds.json()["error"] == "amount_exceeds_hold"

    not_yours = _post(
        world, eve_token, "/api/extension/usage/capture", hold_id=hold["hold_id"], amount=1
    )
    assert not_yours.status_code == 404
    assert not_yours.json()["error"] == "hold_not_found", "another user's hold is not revealed"
    assert (
        _post(world, eve_token, "/api/extension/usage/void", hold_id=hold["hold_id"]).status_code
        == 404
    )

    unknown = _post(
        world, token, "/api/extension/usage/void", hold_id="00000000-0000-7000-8000-000000000000"
    )
    assert unknown.status_code == 404

    voided = _post(world, token, "/api/extension/usage/void", hold_id=hold["hold_id"])
    assert voided.status_code == 200, voided.text
    assert voided.json()["released"] == 6 and voided.json()["available"] == 10
    assert (
        _post(world, token, "/api/extension/usage/void", hold_id=hold["hold_id"]).json()["replayed"]
        is True
    )

    after = _post(world, token, "/api/extension/usage/capture", hold_id=hold["hold_id"], amount=1)
    assert after.status_code == 409 and after.json()["error"] == "hold_voided"
    assert world.pool_balance(org) == Decimal(10)
    assert world.consistency_problems() == []


def test_H1_A4_authorize_takes_the_pool_from_the_token_only(world: World) -> None:
    org = world.org(pool=10)
    other = world.org(pool=1000)
    carol = world.user(personal=3)
    world.seat(org, carol)
    token = world.extension_token(carol, org)

    r = _post(
        world,
        token,
        "/api/extension/usage/authorize",
        amount=1,
        description="x",
        clerk_org_id=other,
    )
    assert r.status_code == 400
    assert "pool comes from the token" in r.text

    personal = world.extension_token(carol)
    r = _post(world, personal, "/api/extension/usage/authorize", amount=2, description="x")
    assert r.status_code == 200 and r.json()["pool"] == "personal"
    r = _post(world, personal, "/api/extension/usage/authorize", amount=2, description="x")
    assert r.status_code == 402, "1 of 3 personal credits left: no fallback to the org pool"


def test_H1_C3_seat_revoked_after_authorize_still_captures(world: World) -> None:
    org = world.org(pool=50)
    dan = world.user()
    world.seat(org, dan)
    token = world.extension_token(dan, org)
    hold = _post(world, token, "/api/extension/usage/authorize", amount=5, description="x").json()

    world.set_seat(org, dan, "revoked")
    refused = _post(
        world, token, "/api/extension/usage/authorize", amount=1, description="new work"
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "no_active_seat"

    done = _post(world, token, "/api/extension/usage/capture", hold_id=hold["hold_id"], amount=5)
    assert done.status_code == 200, "the authorized work was done: the hold is the promise"
    assert world.pool_balance(org) == Decimal(45)


def test_H1_idempotency_key_replays_the_hold_and_409s_on_reuse(world: World) -> None:
    org = world.org(pool=50)
    fay = world.user()
    world.seat(org, fay)
    token = world.extension_token(fay, org)

    first = _post(
        world, token, "/api/extension/usage/authorize", key="k-1", amount=5, description="x"
    )
    again = _post(
        world, token, "/api/extension/usage/authorize", key="k-1", amount=5, description="x"
    )
    assert first.status_code == again.status_code == 200
    assert again.json()["hold_id"] == first.json()["hold_id"]
    assert again.json()["replayed"] is True
    assert _held(world, org) == Decimal(5)

    reused = _post(
        world, token, "/api/extension/usage/authorize", key="k-1", amount=6, description="x"
    )
    assert reused.status_code == 409
    assert reused.json()["error"] == "idempotency_key_reused"


def test_H1_bad_input(world: World) -> None:
    org = world.org(pool=50)
    gil = world.user()
    world.seat(org, gil)
    token = world.extension_token(gil, org)

    assert (
        _post(world, token, "/api/extension/usage/authorize", amount=0, description="x").status_code
        == 400
    )
    assert (
        _post(
            world,
            token,
            "/api/extension/usage/authorize",
            amount=1,
            description="x",
            ttl_seconds=3601,
        ).status_code
        == 400
    )
    ok = _post(
        world, token, "/api/extension/usage/authorize", amount=1, description="x", ttl_seconds=60
    )
    assert ok.status_code == 200
    assert _post(
        world, token, "/api/extension/usage/capture", hold_id="not-a-uuid", amount=1
    ).status_code in {400, 422}
    assert (
        _post(
            world, token, "/api/extension/usage/capture", hold_id=ok.json()["hold_id"], amount=0
        ).status_code
        == 400
    )
    unauth = world.client.post(
        "/api/extension/usage/authorize", json={"amount": 1, "description": "x"}
    )
    assert unauth.status_code == 401
