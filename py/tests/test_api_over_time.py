"""Seats, accounts and payers over time (SECURITY.md L2-L9), through the API.

Each test arranges real rows in a real Postgres, talks to the issuer's HTTP
app and changes the world the way it changes in production (an admin's
suspension, a Clerk webhook, time passing) between two requests.
"""

from __future__ import annotations

from typing import Any

import httpx

from support.world import CLIENT_ID, REDIRECT_URI, World, pkce_pair


def _signin(world: World, user: str, org: str | None = None, **kw: Any) -> dict[str, Any]:
    """The extension's PKCE sign-in: approve (Clerk session), then redeem the code."""
    verifier, challenge = pkce_pair()
    body: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **kw,
    }
    if org:
        body["clerk_org_id"] = org
    r = world.client.post(
        "/api/auth/complete-vscode-auth", json=body, headers=world.clerk_auth(user)
    )
    assert r.status_code == 200, r.text
    r = world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": r.json()["code"],
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _refresh(world: World, refresh_token: str, **kw: str) -> httpx.Response:
    return world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            **kw,
        },
    )


# -- L2: no silent change of payer ---------------------------------------------------


def test_L2_oauth_refresh_of_a_lost_org_scope_issues_nothing_and_says_invalid_grant(
    world: World,
) -> None:
    org = world.org(pool=10)
    bob = world.user(personal=50)
    world.seat(org, bob)
    grant = _signin(world, bob, org)
    assert grant["pool"] == "organization"
    world.set_seat(org, bob, "suspended")
    r = _refresh(world, grant["refresh_token"])
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"].startswith("org_scope_lost")
    assert org in body["error_description"]
    assert body["clerk_org_id"] == org and body["reason"] == "no_active_seat"
    assert "access_token" not in body and "refresh_token" not in body
    # The family is over: the seat coming back does not revive it.
    world.set_seat(org, bob, "active")
    assert _refresh(world, grant["refresh_token"]).status_code == 400


def test_L2_oauth_refresh_after_leaving_in_clerk_is_org_scope_lost(world: World) -> None:
    org = world.org(pool=10)
    bob = world.user(personal=50)
    world.seat(org, bob)
    grant = _signin(world, bob, org)
    world.clerk.remove_membership(bob, org)
    r = _refresh(world, grant["refresh_token"])
    assert r.status_code == 400
    assert r.json()["reason"] == "not_a_member"
    assert r.json()["error_description"].startswith("org_scope_lost")


def test_L2_the_family_keeps_its_scope_a_personal_family_stays_personal(world: World) -> None:
    org = world.org(pool=10)
    bob = world.user(personal=50)
    world.seat(org, bob, status="suspended")
    # A first request for a denied org keeps today's contract: personal + org_scope_denied.
    _, challenge = pkce_pair()
    r = world.client.post(
        "/api/auth/complete-vscode-auth",
        json={
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "state": "st",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "clerk_org_id": org,
        },
        headers=world.clerk_auth(bob),
    )
    assert r.json()["org_scope_denied"] == {"clerk_org_id": org, "reason": "no_active_seat"}
    grant = _signin(world, bob, org)
    assert grant["pool"] == "personal"
    # The family was created personal; a refresh after the seat comes back stays personal.
    world.set_seat(org, bob, "active")
    r = _refresh(world, grant["refresh_token"])
    assert r.status_code == 200, r.text
    assert r.json()["pool"] == "personal"
    assert r.json().get("org_scope_denied") is None


def test_L2_an_org_family_refreshes_in_its_org_while_the_seat_is_active(world: World) -> None:
    org = world.org(pool=10)
    bob = world.user()
    world.seat(org, bob)
    grant = _signin(world, bob, org)
    r = _refresh(world, grant["refresh_token"])
    assert r.status_code == 200, r.text
    assert r.json()["pool"] == "organization"


def test_L2_first_request_with_require_org_is_still_403_org_scope_denied(world: World) -> None:
    org = world.org(pool=10)
    bob = world.user()
    world.seat(org, bob, status="suspended")
    r = world.client.post(
        "/api/extension-token/generate",
        json={"clerk_org_id": org, "require_org": True},
        headers=world.clerk_auth(bob),
    )
    assert r.status_code == 403
    assert r.json()["error"] == "org_scope_denied"


def test_L2_extension_token_refresh_of_a_lost_org_is_403_and_rotates_nothing(
    world: World,
) -> None:
    org = world.org(pool=10)
    bob = world.user(personal=50)
    world.seat(org, bob)
    old = world.extension_token(bob, org)
    world.set_seat(org, bob, "revoked")
    r = world.client.post(
        "/api/extension-token/refresh", headers={"Authorization": f"Bearer {old}"}
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "org_scope_lost"
    assert r.json()["clerk_org_id"] == org
    assert r.json()["reason"] == "no_active_seat"
    assert "token" not in r.json()
    # Nothing was rotated: the old token still validates (and still cannot spend).
    v = world.client.get("/api/extension/auth/validate", headers={"Authorization": f"Bearer {old}"})
    assert v.status_code == 200
    assert world.personal_balance(bob) == 50


def test_L2_session_refresh_token_of_a_lost_org_is_403_org_scope_lost(world: World) -> None:
    org = world.org(pool=10)
    alice = world.user(personal=5)
    world.seat(org, alice)
    ok = world.client.post(
        "/api/auth/refresh-token", json={"clerk_org_id": org}, headers=world.clerk_auth(alice)
    )
    assert ok.status_code == 200 and ok.json()["pool"] == "organization"
    world.set_seat(org, alice, "suspended")
    r = world.client.post(
        "/api/auth/refresh-token", json={"clerk_org_id": org}, headers=world.clerk_auth(alice)
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "org_scope_lost"
    assert r.json()["clerk_org_id"] == org
    assert "access_token" not in r.json()
