"""The extension's sign-in: PKCE code flow, refresh rotation, revocation (O1-O7, T5, T7)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from support.world import CLIENT_ID, REDIRECT_URI, World, make_world, pkce_pair


def _code(world: World, user: str, challenge: str, org: str | None = None, **kw: Any) -> str:
    body = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "state": "st-123",
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
    assert r.json()["redirect_to"].startswith(REDIRECT_URI + "?code=")
    assert r.json()["state"] == "st-123"
    return str(r.json()["code"])


def _redeem(world: World, code: str, verifier: str, *, form: bool = True, **kw: Any):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        **kw,
    }
    if form:
        return world.client.post("/api/extension/auth/token", data=data)
    return world.client.post("/api/extension/auth/token", json=data)


def _refresh(world: World, refresh_token: str, path: str = "/api/extension/auth/token"):
    return world.client.post(
        path,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        },
    )


def _validate(world: World, token: str) -> int:
    r = world.client.get(
        "/api/extension/auth/validate", headers={"Authorization": f"Bearer {token}"}
    )
    return r.status_code


def test_code_flow_with_an_org_gives_an_org_scoped_access_token(world: World) -> None:
    org = world.org(pool=10, name="Acme Inc")
    alice = world.user()
    world.seat(org, alice, role="owner")
    verifier, challenge = pkce_pair()
    code = _code(world, alice, challenge, org)
    r = _redeem(world, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["pool"] == "organization"
    assert r.headers["cache-control"] == "no-store"
    v = world.client.get(
        "/api/extension/auth/validate", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    claims = v.json()["claims"]
    assert claims["clerk_org_id"] == org
    assert claims["organization_name"] == "Acme Inc"
    assert claims["org_role"] == "org:admin"
    assert claims["type"] == "access"


def test_O1_plain_and_malformed_challenges_are_refused(world: World) -> None:
    user = world.user()
    _, challenge = pkce_pair()
    base = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s"}
    for method, ch in (("plain", challenge), ("S256", "short"), ("S256", challenge + "!")):
        r = world.client.post(
            "/api/auth/complete-vscode-auth",
            json={**base, "code_challenge": ch, "code_challenge_method": method},
            headers=world.clerk_auth(user),
        )
        assert r.status_code == 400, (method, ch, r.text)
    # A verifier of the wrong form never reaches the database's comparison.
    _, challenge = pkce_pair()
    code = _code(world, user, challenge)
    assert _redeem(world, code, "too-short").json()["error"] == "invalid_grant"
    # ...and a wrong (well-formed) verifier is refused.
    other, _ = pkce_pair()
    assert _redeem(world, code, other).json()["error"] == "invalid_grant"


def test_O2_a_code_is_redeemed_once_even_under_10_concurrent_requests(world: World) -> None:
    user = world.user()
    verifier, challenge = pkce_pair()
    code = _code(world, user, challenge)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: _redeem(world, code, verifier), range(10)))
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 1, [r.status_code for r in results]
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code != 200)
    # The second redemption revoked what the first issued: its refresh token is dead.
    assert _refresh(world, ok[0].json()["refresh_token"]).status_code == 400


def test_O3_other_client_redirect_mismatch_and_unknown_client(world: World) -> None:
    user = world.user()
    verifier, challenge = pkce_pair()
    code = _code(world, user, challenge)
    r = _redeem(world, code, verifier, redirect_uri="http://127.0.0.1:9999/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code = _code(world, user, challenge)
    r = _redeem(world, code, verifier, client_id="someone-else")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"  # R3
    r = world.client.post(
        "/api/auth/complete-vscode-auth",
        json={
            "client_id": "unknown",
            "redirect_uri": REDIRECT_URI,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        headers=world.clerk_auth(user),
    )
    assert r.status_code == 400


def test_O3_expired_code_is_invalid_grant(world: World) -> None:
    user = world.user()
    verifier, challenge = pkce_pair()
    code = _code(world, user, challenge)
    world.sql(
        "update public.oauth_codes set created_at = created_at - interval '11 minutes', "
        "expires_at = expires_at - interval '11 minutes'"
    )
    r = _redeem(world, code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def _signed_in(world: World) -> dict[str, Any]:
    user = world.user()
    verifier, challenge = pkce_pair()
    code = _code(world, user, challenge)
    r = _redeem(world, code, verifier)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_O4_refresh_rotates_and_the_old_token_stops_working(world: World) -> None:
    first = _signed_in(world)
    r = _refresh(world, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    # The original system's second path serves the same grant.
    r = _refresh(world, second["refresh_token"], "/api/auth/token")
    assert r.status_code == 200, r.text
    assert _refresh(world, second["refresh_token"]).status_code == 400


def test_O5_reuse_revokes_the_whole_family_newest_included(world: World) -> None:
    first = _signed_in(world)
    second = _refresh(world, first["refresh_token"]).json()
    reuse = _refresh(world, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert _refresh(world, second["refresh_token"]).status_code == 400


def test_O6_concurrent_refreshes_never_yield_two_live_families(world: World) -> None:
    first = _signed_in(world)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _refresh(world, first["refresh_token"]), range(8)))
    winners = [r.json()["refresh_token"] for r in results if r.status_code == 200]
    assert len(winners) <= 1
    live = [t for t in winners if _refresh(world, t).status_code == 200]
    assert len(live) <= 1


def test_O7_revocation_answers_200_for_anything_and_revokes_descendants(world: World) -> None:
    for token in ("garbage", "rt_unknown", "a" * 5000, "a" * 9000):
        r = world.client.post("/api/extension/auth/revoke", data={"token": token})
        assert r.status_code == 200
    first = _signed_in(world)
    second = _refresh(world, first["refresh_token"]).json()
    r = world.client.post(
        "/api/extension/auth/revoke",
        data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
    )
    assert r.status_code == 200
    assert _refresh(world, second["refresh_token"]).status_code == 400


def test_T5_token_kinds_never_cross(world: World) -> None:
    tokens = _signed_in(world)
    # A refresh token is never a bearer token.
    assert _validate(world, tokens["refresh_token"]) == 401
    # An access token is not a refresh token, nor a long-lived token.
    assert _refresh(world, tokens["access_token"]).status_code == 400
    r = world.client.post(
        "/api/extension-token/refresh",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert r.status_code == 401


def test_T7_revoked_long_lived_token_is_rejected_despite_its_signature(world: World) -> None:
    user = world.user(personal=5)
    token = world.extension_token(user)
    assert _validate(world, token) == 200
    listed = world.client.get("/api/extension-token", headers=world.clerk_auth(user)).json()
    assert len(listed) == 1 and "token" not in listed[0]
    r = world.client.post(
        "/api/extension-token/revoke",
        json={"token_id": listed[0]["id"]},
        headers=world.clerk_auth(user),
    )
    assert r.status_code == 204
    assert _validate(world, token) == 401
    stored = world.sql("select token_hash from public.extension_tokens")
    assert all(token not in str(row) for row in stored)  # only hashes are stored


def test_extension_token_refresh_rotates_and_rechecks_the_org(world: World) -> None:
    org = world.org(pool=10)
    bob = world.user()
    world.seat(org, bob)
    old = world.extension_token(bob, org)
    r = world.client.post(
        "/api/extension-token/refresh", headers={"Authorization": f"Bearer {old}"}
    )
    assert r.status_code == 200, r.text
    new = r.json()["token"]
    assert r.json()["claims"]["pool"] == "organization"
    assert _validate(world, old) == 401
    world.set_seat(org, bob, "suspended")
    r = world.client.post(
        "/api/extension-token/refresh", headers={"Authorization": f"Bearer {new}"}
    )
    # L2: a lost seat is an explicit error, never a personal token.
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "org_scope_lost"
    assert r.json()["reason"] == "no_active_seat"


def test_dashboard_and_session_refresh_tokens(world: World) -> None:
    org = world.org(pool=10)
    alice = world.user()
    world.seat(org, alice, role="admin")
    r = world.client.post(
        "/api/dashboard-token/generate",
        json={"clerk_org_id": org},
        headers=world.clerk_auth(alice, org_id=org, org_role="admin"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["claims"]["pool"] == "organization"
    assert r.headers["cache-control"] == "no-store"
    r = world.client.post("/api/auth/refresh-token", json={}, headers=world.clerk_auth(alice))
    assert r.status_code == 200, r.text
    assert r.json()["pool"] == "personal"


@pytest.mark.parametrize(
    "path",
    ["/.well-known/jwks.json", "/.well-known/oauth-authorization-server", "/healthz"],
)
def test_discovery_and_health(world: World, path: str) -> None:
    r = world.client.get(path)
    assert r.status_code == 200, r.text


def test_R3_unknown_or_missing_client_id_is_401_invalid_client(world: World) -> None:
    """RFC 6749 §5.2: invalid_client, 401; a challenge only for a client that tried a scheme."""
    user = world.user()
    verifier, challenge = pkce_pair()
    code = _code(world, user, challenge)
    for over in ({"client_id": "unknown"}, {"client_id": ""}):
        r = _redeem(world, code, verifier, **over)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), r.text
        assert "www-authenticate" not in r.headers  # public client, no scheme tried
    r = _refresh(world, "rt_whatever")
    assert r.status_code == 400  # a known client: the grant is judged
    r = world.client.post(
        "/api/extension/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": "rt_x", "client_id": "nobody"},
        headers={"Authorization": "Basic bm9ib2R5Og=="},
    )
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic ")
    # The code was not spent by the refusals above.
    assert _redeem(world, code, verifier).status_code == 200
    r = world.client.post("/api/extension/auth/token", data={"grant_type": "password"})
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")


def test_R3_revocation_without_a_token_is_400_invalid_request(world: World) -> None:
    """RFC 7009 §2.1: ``token`` is required."""
    for data in ({}, {"token": ""}, {"token_type_hint": "refresh_token"}):
        r = world.client.post("/api/extension/auth/revoke", data=data)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_request"), data
    r = world.client.post("/api/extension/auth/revoke", json={"token": None})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


def test_R3_no_credentials_get_a_challenge_without_an_error_code(world: World) -> None:
    """RFC 6750 §3.1: without credentials, ``WWW-Authenticate: Bearer`` and no error code."""
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}):
        r = world.client.get("/api/extension/auth/validate", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        r = world.client.post(
            "/api/extension/usage", json={"amount": 1, "description": "x"}, headers=headers
        )
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
    bad = {"Authorization": "Bearer not-a-token"}
    r = world.client.get("/api/extension/auth/validate", headers=bad)
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_R1_metadata_issuer_is_the_public_base_url_not_the_token_iss(
    world: World, fake_clerk: Any
) -> None:
    """RFC 8414 §3.3: ``issuer`` is the URL the metadata is served under; tokens keep JWT_ISSUER."""
    r = world.client.get("/.well-known/oauth-authorization-server")
    metadata = r.json()
    assert metadata["issuer"] == "http://testserver"  # no ISSUER_URL: the request's base
    for key in ("authorization_endpoint", "token_endpoint", "revocation_endpoint", "jwks_uri"):
        assert metadata[key].startswith(metadata["issuer"] + "/"), key
    assert metadata["authorization_response_iss_parameter_supported"] is True
    tokens = _signed_in(world)
    claims = world.client.get(
        "/api/extension/auth/validate",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    ).json()["claims"]
    assert claims["iss"] == "softcodes.ai"
    other = make_world(world.db_url, fake_clerk, ISSUER_URL="https://issuer.example.com")
    try:
        metadata = other.client.get("/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == "https://issuer.example.com"
        assert metadata["token_endpoint"] == "https://issuer.example.com/api/extension/auth/token"
    finally:
        other.close()
        other.issuer.close()


def _payload(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a JWT, decoded only (the test then checks them)."""
    import base64
    import json

    def part(segment: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
        return data

    header, payload, _ = token.split(".")
    return part(header), part(payload)


RFC9068_REQUIRED = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")


def test_R2_every_at_jwt_has_the_rfc9068_required_claims(world: World) -> None:
    """RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti on every ``typ: at+jwt`` token."""
    org = world.org(pool=10)
    alice = world.user()
    world.seat(org, alice)
    verifier, challenge = pkce_pair()
    code = _code(world, alice, challenge, org)
    grant = _redeem(world, code, verifier).json()
    refreshed = _refresh(world, grant["refresh_token"]).json()
    dashboard = world.client.post(
        "/api/dashboard-token/generate", json={}, headers=world.clerk_auth(alice)
    ).json()["token"]
    session = world.client.post(
        "/api/auth/refresh-token", json={}, headers=world.clerk_auth(alice)
    ).json()["access_token"]
    for token, client in (
        (grant["access_token"], CLIENT_ID),
        (refreshed["access_token"], CLIENT_ID),
        (dashboard, "dashboard"),
        (session, "dashboard"),
    ):
        header, payload = _payload(token)
        assert header["typ"] == "at+jwt"
        for claim in RFC9068_REQUIRED:
            assert payload.get(claim) not in (None, ""), claim
        assert payload["client_id"] == client
        assert isinstance(payload["exp"], int) and isinstance(payload["iat"], int)
    # A long-lived token (typ JWT, not RFC 9068) carries it too: one schema for all.
    long_lived = world.extension_token(alice)
    header, payload = _payload(long_lived)
    assert header["typ"] == "JWT" and payload["client_id"] == "dashboard"


# -- R5: the payer chosen on the page binds the grant ---------------------------------


def test_R5_a_code_approved_personal_never_redeems_into_an_org_token(world: World) -> None:
    org = world.org(pool=10)
    alice = world.user()
    world.seat(org, alice)
    verifier, challenge = pkce_pair()
    code = _code(world, alice, challenge)  # the user approved Personal
    r = _redeem(world, code, verifier, clerk_org_id=org)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant"), r.text
    assert r.json()["error_description"].startswith("payer_mismatch"), r.text
    assert "access_token" not in r.json()
    # The same org as approved is not a switch: it redeems.
    verifier, challenge = pkce_pair()
    code = _code(world, alice, challenge, org)
    r = _redeem(world, code, verifier, clerk_org_id=org)
    assert r.status_code == 200 and r.json()["pool"] == "organization", r.text
    # An org approval with another org (or a personal request) at the token endpoint: refused.
    other = world.org(pool=10)
    world.seat(other, alice)
    verifier, challenge = pkce_pair()
    code = _code(world, alice, challenge, org)
    r = _redeem(world, code, verifier, clerk_org_id=other)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant"), r.text


def test_R5_a_refresh_never_switches_the_pool_of_its_family(world: World) -> None:
    org = world.org(pool=10)
    alice = world.user()
    world.seat(org, alice)
    personal = pkce_sign_in_via(world, alice)
    assert personal["pool"] == "personal"
    r = world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": personal["refresh_token"],
            "client_id": CLIENT_ID,
            "clerk_org_id": org,
        },
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant"), r.text
    assert r.json()["error_description"].startswith("payer_mismatch"), r.text
    # An org family asked for another org, or its own: only its own is answered.
    scoped = pkce_sign_in_via(world, alice, org)
    assert scoped["pool"] == "organization"
    other = world.org(pool=10)
    world.seat(other, alice)
    same = world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": scoped["refresh_token"],
            "client_id": CLIENT_ID,
            "clerk_org_id": org,
        },
    )
    assert same.status_code == 200 and same.json()["pool"] == "organization", same.text
    r = world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": same.json()["refresh_token"],
            "client_id": CLIENT_ID,
            "clerk_org_id": other,
        },
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant"), r.text


def pkce_sign_in_via(world: World, user: str, org: str | None = None) -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    r = _redeem(world, _code(world, user, challenge, org), verifier)
    assert r.status_code == 200, r.text
    return dict(r.json())
