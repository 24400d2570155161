"""H4 through the hold route: the bounds of ``private.hold_limits`` (defaults).

Seen before (issue 28): a member authorized the whole available balance with
``ttl_seconds=3600`` (everyone else got 402 for an hour, and a void cost
nothing), and opened 50 live holds in 0.1 s. The database bounds every
client; the route answers its refusals 422 / 429 with the reason.
"""

from __future__ import annotations

from typing import Any

import httpx

from support.world import World

AUTHORIZE = "/api/extension/usage/authorize"


def _authorize(world: World, token: str, **body: Any) -> httpx.Response:
    return world.client.post(AUTHORIZE, json=body, headers={"Authorization": f"Bearer {token}"})


def test_H4_one_member_cannot_reserve_a_shared_pool_for_an_hour(world: World) -> None:
    org = world.org(pool=100)
    mallory, bob = world.user(), world.user()
    world.seat(org, mallory)
    world.seat(org, bob)
    token = world.extension_token(mallory, org)

    hour = _authorize(world, token, amount=100, description="all of it", ttl_seconds=3600)
    assert hour.status_code == 422, hour.text
    assert hour.json()["error"] == "hold_ttl_too_long"

    whole = _authorize(world, token, amount=100, description="all of it")
    assert whole.status_code == 422, whole.text
    assert whole.json()["error"] == "hold_too_large"
    assert whole.json()["available"] == 50, "the most one seat may hold of a shared pool"
    assert whole.json()["error_description"]

    half = _authorize(world, token, amount=50, description="half", ttl_seconds=900)
    assert half.status_code == 200, half.text

    other = _authorize(world, world.extension_token(bob, org), amount=50, description="mine")
    assert other.status_code == 200, "the pool stays available to the others"
    assert world.consistency_problems() == []


def test_H4_live_holds_per_seat_are_bounded_with_429(world: World) -> None:
    org = world.org(pool=1000)
    alice, bob = world.user(), world.user()
    world.seat(org, alice)
    world.seat(org, bob)
    token = world.extension_token(alice, org)

    answers = [
        _authorize(world, token, amount=1, description=f"stream {i}").status_code for i in range(50)
    ]
    assert answers[:8] == [200] * 8
    assert set(answers[8:]) == {429}, "the ninth live hold and after: too_many_holds"
    refused = _authorize(world, token, amount=1, description="one more")
    assert refused.json()["error"] == "too_many_holds"
    held = world.sql(
        "select count(*) from public.credit_holds as h join public.users as u on u.id = h.user_id "
        "where u.clerk_user_id = %s and h.state = 'held'",
        (alice,),
    )
    assert held[0][0] == 8

    personal = world.user(personal=100)
    ptoken = world.extension_token(personal)
    statuses = [
        _authorize(world, ptoken, amount=1, description=f"p {i}").status_code for i in range(9)
    ]
    assert statuses == [200] * 8 + [429], "a personal user is bounded the same way"
