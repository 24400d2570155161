"""Org attribution end to end: Clerk membership AND an active seat (A1-A3, A5)."""

from __future__ import annotations

from typing import Any

import pytest

from support.world import World


def _dashboard(world: World, user: str, org: str, **session: Any) -> Any:
    return world.client.post(
        "/api/dashboard-token/generate",
        json={"clerk_org_id": org},
        headers=world.clerk_auth(user, **session),
    )


@pytest.mark.parametrize("status", ["suspended", "pending", "revoked"])
def test_A1_seat_not_active_gives_a_personal_token(world: World, status: str) -> None:
    org = world.org(pool=5)
    user = world.user()
    world.seat(org, user, status=status)
    r = _dashboard(world, user, org)
    assert r.status_code == 200, r.text
    assert r.json()["claims"]["pool"] == "personal"
    assert all(r.json()["claims"][k] is None for k in ("clerk_org_id", "seat_id", "org_role"))
    assert r.json()["org_scope_denied"]["reason"] == "no_active_seat"


def test_A1_seat_without_clerk_membership_gives_a_personal_token(world: World) -> None:
    org = world.org(pool=5)
    user = world.user()
    world.seat(org, user, member_in_clerk=False)
    r = _dashboard(world, user, org)
    assert r.json()["claims"]["pool"] == "personal"
    assert r.json()["org_scope_denied"]["reason"] == "not_a_member"


def test_A1_membership_and_active_seat_give_full_attribution(world: World) -> None:
    org = world.org(pool=5, name="Acme Inc")
    user = world.user()
    world.seat(org, user, role="owner")
    claims = _dashboard(world, user, org).json()["claims"]
    assert claims["pool"] == "organization"
    assert claims["organization_name"] == "Acme Inc"
    assert claims["seat_role"] == "owner"
    assert claims["org_role"] == "org:admin"
    assert claims["stripe_customer_id"].startswith("cus_")
    assert claims["organization_subscription_id"]


def test_A2_active_org_in_the_session_means_no_clerk_api_call(world: World) -> None:
    org = world.org(pool=5)
    user = world.user()
    world.seat(org, user)
    world.clerk.reset_calls()
    r = _dashboard(world, user, org, org_id=org, org_role="member")
    assert r.json()["claims"]["pool"] == "organization"
    assert world.clerk.api_calls == 0
    r = _dashboard(world, user, org)  # session names no org: the API is asked
    assert r.json()["claims"]["pool"] == "organization"
    assert world.clerk.api_calls >= 1


def test_A3_clerk_down_fails_closed(world: World) -> None:
    org = world.org(pool=5)
    user = world.user()
    world.seat(org, user)
    world.clerk.fail_with(503)
    try:
        r = _dashboard(world, user, org)
        assert r.status_code == 200
        assert r.json()["claims"]["pool"] == "personal"
        assert r.json()["org_scope_denied"]["reason"] == "clerk_unavailable"
        strict = world.client.post(
            "/api/dashboard-token/generate",
            json={"clerk_org_id": org, "require_org": True},
            headers=world.clerk_auth(user),
        )
        assert strict.status_code == 403
        assert strict.json()["reason"] == "clerk_unavailable"
    finally:
        world.clerk.fail_with(None)


def test_A5_v1_session_roles_normalize(world: World) -> None:
    org = world.org(pool=5)
    user = world.user()
    world.seat(org, user, role="admin")
    r = _dashboard(world, user, org, version=1, org_id=org, org_role="org:admin")
    assert r.json()["claims"]["org_role"] == "org:admin"
    r = _dashboard(world, user, org, version=2, org_id=org, org_role="admin")
    assert r.json()["claims"]["org_role"] == "org:admin"
