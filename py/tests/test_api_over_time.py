"""Seats, accounts and payers over time (SECURITY.md L2-L9), through the API.

Each test arranges real rows in a real Postgres, talks to the issuer's HTTP
app and changes the world the way it changes in production (an admin's
suspension, a Clerk webhook, time passing) between two requests.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from issuer.errors import InvalidToken as InvalidTokenError
from issuer.integrations.fastapi import TokenClaimsDep, TokenVerifier, install
from issuer.rpc_generated import ClerkEventResult
from support.world import CLIENT_ID, REDIRECT_URI, World, approve_pkce, pkce_pair, pkce_sign_in


def _signin(world: World, user: str, org: str | None = None, **kw: Any) -> dict[str, Any]:
    """The extension's PKCE sign-in through the in-process app."""
    return pkce_sign_in(world.client, world, user, org, **kw)


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


# -- L3: credentials die with the account ------------------------------------------------


def _clerk_event(world: World, svix_id: str, event: dict[str, Any]) -> ClerkEventResult:
    """Deliver a Clerk webhook event the way the clerk-webhooks edge function does."""
    return world.issuer.rpc.apply_clerk_event(p_svix_id=svix_id, p_event=event)


def _revoked(result: ClerkEventResult) -> tuple[int | None, int | None]:
    """(extension tokens, refresh tokens) the event revoked."""
    return result.extension_tokens_revoked, result.refresh_tokens_revoked


def _user_event(kind: str, user: str, **data: Any) -> dict[str, Any]:
    import time

    return {
        "type": kind,
        "object": "event",
        "timestamp": int(time.time() * 1000),
        "data": {"id": user, "object": "user", **data},
    }


def _validate(world: World, token: str) -> httpx.Response:
    return world.client.get(
        "/api/extension/auth/validate", headers={"Authorization": f"Bearer {token}"}
    )


def test_L3_user_deleted_revokes_long_lived_tokens_and_refresh_families(world: World) -> None:
    org = world.org(pool=10)
    carl = world.user()
    world.seat(org, carl)
    long_lived = world.extension_token(carl, org)
    personal = world.extension_token(carl)
    grant = _signin(world, carl, org)
    assert _validate(world, long_lived).status_code == 200

    result = _clerk_event(world, "msg_del_" + carl, _user_event("user.deleted", carl, deleted=True))
    assert _revoked(result) == (2, 1)

    assert _validate(world, long_lived).status_code == 401
    assert _validate(world, personal).status_code == 401
    r = _refresh(world, grant["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = world.client.post(
        "/api/extension-token/refresh", headers={"Authorization": f"Bearer {personal}"}
    )
    assert r.status_code == 401


def test_L3_ban_and_lock_revoke_credentials_other_updates_do_not(world: World) -> None:
    for flag in ("banned", "locked"):
        dora = world.user()
        token = world.extension_token(dora)
        grant = _signin(world, dora)
        quiet = _clerk_event(
            world, f"msg_upd_{dora}", _user_event("user.updated", dora, first_name="Dora")
        )
        assert _revoked(quiet) == (0, 0)
        assert _validate(world, token).status_code == 200
        loud = _clerk_event(
            world, f"msg_{flag}_{dora}", _user_event("user.updated", dora, **{flag: True})
        )
        assert _revoked(loud) == (1, 1), flag
        assert _validate(world, token).status_code == 401, flag
        assert _refresh(world, grant["refresh_token"]).status_code == 400, flag


def test_L3_rotation_refuses_a_deleted_user_even_for_a_token_issued_after_the_event(
    world: World,
) -> None:
    eve = world.user()
    _clerk_event(world, "msg_del_" + eve, _user_event("user.deleted", eve, deleted=True))
    # A Clerk session still in flight gets one more long-lived token out...
    token = world.extension_token(eve)
    # ...but it never rotates: the user no longer exists.
    r = world.client.post(
        "/api/extension-token/refresh", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 401
    # And a code approved by that session redeems nothing at all (L10).
    approved, verifier = approve_pkce(world.client, world, eve)
    assert approved.status_code == 200, approved.text
    r = world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": approved.json()["code"],
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
        },
    )
    assert r.status_code == 400
    assert "account_closed" in r.json()["error_description"]


def test_L3_a_rotation_chain_has_an_absolute_lifetime(world: World) -> None:
    max_lifetime = world.issuer.settings.extension_token_max_lifetime
    assert max_lifetime == 365 * 86_400  # the default
    fred = world.user()
    token = world.extension_token(fred)
    # The original sign-in was 364 days ago: one more rotation, capped at the chain's end.
    world.sql(
        "update public.extension_tokens set chain_started_at = now() - interval '364 days' "
        "where clerk_user_id = %s",
        (fred,),
    )
    r = world.client.post(
        "/api/extension-token/refresh", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    claims = r.json()["claims"]
    assert claims["exp"] - claims["iat"] <= 86_400 + 5  # rotating never extends the chain
    (started,) = world.sql(
        "select extract(epoch from chain_started_at)::bigint from public.extension_tokens "
        "where id = %s",
        (r.json()["token_id"],),
    )[0]
    assert claims["exp"] <= started + max_lifetime
    # Past the end: refused.
    world.sql(
        "update public.extension_tokens set chain_started_at = now() - interval '366 days' "
        "where clerk_user_id = %s",
        (fred,),
    )
    r = world.client.post(
        "/api/extension-token/refresh",
        headers={"Authorization": f"Bearer {r.json()['token']}"},
    )
    assert r.status_code == 401
    assert "chain_expired" in r.json()["error_description"]


def test_L3_a_refresh_family_has_an_absolute_lifetime(world: World) -> None:
    gus = world.user()
    grant = _signin(world, gus)
    world.sql(
        "update public.refresh_tokens set family_started_at = now() - interval '365 days' + "
        "interval '1 hour' where clerk_user_id = %s",
        (gus,),
    )
    r = _refresh(world, grant["refresh_token"])
    assert r.status_code == 200, r.text
    (left,) = world.sql(
        "select extract(epoch from expires_at - now()) from public.refresh_tokens "
        "where clerk_user_id = %s and rotated_at is null",
        (gus,),
    )[0]
    assert left <= 3600  # the new refresh token ends with the family, not 30 days later
    world.sql(
        "update public.refresh_tokens set family_started_at = now() - interval '366 days' "
        "where clerk_user_id = %s",
        (gus,),
    )
    r = _refresh(world, r.json()["refresh_token"])
    assert r.status_code == 400
    assert "chain_expired" in r.json()["error_description"]


# -- L7: idempotency keys cannot be squatted ------------------------------------------------


def _use(world: World, token: str, key: str, amount: int) -> httpx.Response:
    return world.client.post(
        "/api/extension/usage",
        json={"amount": amount, "description": "chat"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


def test_L7_a_member_can_neither_block_nor_probe_another_members_key(world: World) -> None:
    org = world.org(pool=100)
    ann, ben = world.user(), world.user()
    world.seat(org, ann)
    world.seat(org, ben)
    ann_token, ben_token = world.extension_token(ann, org), world.extension_token(ben, org)
    # Ben guesses the key Ann's extension will use and spends with it first.
    squat = _use(world, ben_token, "req-shared", 1)
    assert squat.status_code == 200 and squat.json()["replayed"] is False
    # Ann's request is hers: charged, not a 409, not a replay of Ben's.
    first = _use(world, ann_token, "req-shared", 5)
    assert first.status_code == 200, first.text
    assert first.json()["replayed"] is False
    assert first.json()["transaction_id"] != squat.json()["transaction_id"]
    # Ann's retry replays her own request; Ben's retry his.
    assert (
        _use(world, ann_token, "req-shared", 5).json()["transaction_id"]
        == (first.json()["transaction_id"])
    )
    assert _use(world, ben_token, "req-shared", 1).json()["replayed"] is True
    # Same caller, same key, other arguments: still 409.
    assert _use(world, ann_token, "req-shared", 6).status_code == 409
    assert world.pool_balance(org) == 94


def test_L7_a_member_cannot_squat_a_grant_or_refund_key(world: World) -> None:
    org = world.org(pool=10)
    cat = world.user()
    world.seat(org, cat)
    token = world.extension_token(cat, org)
    assert _use(world, token, "invoice-77", 1).status_code == 200
    assert _use(world, token, "refund-77", 1).status_code == 200
    granted = world.issuer.rpc.grant_credits(
        p_amount=50, p_description="top-up", p_clerk_org_id=org, p_idempotency_key="invoice-77"
    )
    assert granted.ok and not granted.replayed
    spent = _use(world, token, "req-to-refund", 2).json()["transaction_id"]
    refunded = world.issuer.rpc.call(
        "refund_credits", p_transaction_id=spent, p_idempotency_key="refund-77"
    )
    assert refunded["ok"] is True and refunded["replayed"] is False
    assert world.pool_balance(org) == 10 - 1 - 1 + 50 - 2 + 2


# -- L5: validation says when org claims are stale --------------------------------------------


def _statements(world: World) -> int:
    from issuer.rpc import PsycopgRpc

    backend = world.issuer.rpc.backend
    assert isinstance(backend, PsycopgRpc)
    return backend.statements_sent


def test_L5_validate_reports_a_lost_org_scope_in_one_round_trip(world: World) -> None:
    org = world.org(pool=10)
    olga = world.user()
    world.seat(org, olga, role="owner")
    long_lived = world.extension_token(olga, org)
    access = _signin(world, olga, org)["access_token"]
    personal = _signin(world, olga)["access_token"]

    for token in (long_lived, access):
        before = _statements(world)
        r = _validate(world, token)
        assert _statements(world) - before == 1  # one round trip, also for long-lived tokens
        assert r.json()["org_scope"] == "active"
        assert r.json()["claims"]["seat_role"] == "owner"
    before = _statements(world)
    assert _validate(world, personal).json()["org_scope"] is None
    assert _statements(world) - before == 0  # a personal access token needs no database

    world.set_seat(org, olga, "revoked")
    for token in (long_lived, access):
        before = _statements(world)
        r = _validate(world, token)
        assert _statements(world) - before == 1
        assert r.status_code == 200
        body = r.json()
        assert body["org_scope"] == "lost"
        assert body["org_scope_reason"] == "no_active_seat"
        # A revoked owner is never reported as an owner.
        assert body["claims"]["seat_role"] is None
        assert body["claims"]["org_role"] is None


def test_L5_the_fastapi_integration_refuses_a_lost_org_scope_unless_told_otherwise(
    world: World,
) -> None:
    org = world.org(pool=10)
    pia = world.user()
    world.seat(org, pia, role="owner")
    tokens = [world.extension_token(pia, org), _signin(world, pia, org)["access_token"]]

    def backend(allow: bool) -> TestClient:
        app = FastAPI()
        install(
            app, TokenVerifier(world.issuer.keys, rpc=world.issuer.rpc, allow_lost_org_scope=allow)
        )

        @app.get("/whoami")
        def whoami(claims: TokenClaimsDep) -> dict[str, Any]:
            return {"seat_role": claims.seat_role, "org_role": claims.org_role}

        return TestClient(app)

    strict, lenient = backend(False), backend(True)
    for token in tokens:
        auth = {"Authorization": f"Bearer {token}"}
        assert strict.get("/whoami", headers=auth).json()["seat_role"] == "owner"
    world.set_seat(org, pia, "suspended")
    for token in tokens:
        auth = {"Authorization": f"Bearer {token}"}
        r = strict.get("/whoami", headers=auth)
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "org_scope_lost"
        assert r.json()["clerk_org_id"] == org
        r = lenient.get("/whoami", headers=auth)
        assert r.status_code == 200
        assert r.json() == {"seat_role": None, "org_role": None}


# -- L9: tokens carry the user's email --------------------------------------------------------


def _claims_of(world: World, token: str) -> dict[str, Any]:
    claims: dict[str, Any] = _validate(world, token).json()["claims"]
    return claims


def test_L9_tokens_carry_users_email_when_the_clerk_session_has_none(world: World) -> None:
    org = world.org(pool=10)
    hal = world.user(email="hal@example.com")
    world.seat(org, hal)
    # Clerk's default session token has no email claim (the fake's default too).
    r = world.client.post(
        "/api/dashboard-token/generate",
        json={"clerk_org_id": org},
        headers=world.clerk_auth(hal, org_id=org),
    )
    before = _statements(world)
    r = world.client.post(
        "/api/dashboard-token/generate",
        json={"clerk_org_id": org},
        headers=world.clerk_auth(hal, org_id=org),
    )
    assert _statements(world) - before == 1  # still the one attribution round trip
    assert r.json()["claims"]["email"] == "hal@example.com"
    assert r.json()["claims"]["pool"] == "organization"
    personal = world.client.post("/api/dashboard-token/generate", headers=world.clerk_auth(hal))
    assert personal.json()["claims"]["email"] == "hal@example.com"
    assert _claims_of(world, world.extension_token(hal, org))["email"] == "hal@example.com"
    grant = _signin(world, hal, org)
    assert _claims_of(world, grant["access_token"])["email"] == "hal@example.com"
    again = _refresh(world, grant["refresh_token"]).json()
    assert _claims_of(world, again["access_token"])["email"] == "hal@example.com"
    # The session's own email wins when it has one.
    r = world.client.post(
        "/api/dashboard-token/generate", headers=world.clerk_auth(hal, email="hal@work.example")
    )
    assert r.json()["claims"]["email"] == "hal@work.example"


def test_L9_email_is_null_only_when_the_database_has_none(world: World) -> None:
    ivy = unique_user_without_email(world)
    r = world.client.post("/api/dashboard-token/generate", headers=world.clerk_auth(ivy))
    assert r.status_code == 200
    assert r.json()["claims"]["email"] is None


def unique_user_without_email(world: World) -> str:
    import uuid

    user = f"user_{uuid.uuid4().hex[:12]}"
    world.clerk.add_user(user)
    world.as_service("insert into public.users (clerk_user_id) values (%s)", (user,))
    return user


# -- L8: health checks are cheap --------------------------------------------------------------


def test_L8_healthz_over_postgrest_is_one_trivial_rpc(world: World, fake_clerk: Any) -> None:
    from issuer.api import create_app
    from issuer.service import Issuer
    from issuer.settings import load_settings
    from support.postgrest_double import running_postgrest_double
    from support.world import issuer_env

    key = "service-role-key-for-the-double"
    with running_postgrest_double(world.db_url, key) as double:
        env = issuer_env(world.db_url, fake_clerk)
        del env["DATABASE_URL"]
        env.update({"SUPABASE_URL": double.url, "SUPABASE_SERVICE_ROLE_KEY": key})
        issuer = Issuer.from_settings(load_settings(env))
        try:
            client = TestClient(create_app(issuer))
            for _ in range(3):
                r = client.get("/healthz")
                assert r.status_code == 200, r.text
        finally:
            issuer.close()
    assert double.calls == ["health_check"] * 3  # never credit_consistency_check
    (reads,) = world.sql(
        "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname = 'public' and p.proname = 'health_check' and p.prosrc ~* 'from'"
    )[0]
    assert reads == 0  # the function reads no table


# -- L6: HS256 can be switched off -------------------------------------------------------------


def test_L6_with_es256_keys_jwt_accept_hs256_false_refuses_every_hs256_token(
    db_url: str, fake_clerk: Any
) -> None:
    import json

    import pytest

    from issuer.claims import TOKEN_TYPE_ACCESS, build_claims
    from issuer.errors import ConfigError
    from issuer.settings import load_settings
    from issuer.signing import KeyRing, generate_es256_jwk
    from support.world import JWT_SECRET, issuer_env, make_world

    keys = json.dumps({"keys": [generate_es256_jwk("es-l6")]})
    # What a holder of JWT_SECRET can mint: any HS256 token at all.
    forger = KeyRing(
        hmac_secret=JWT_SECRET.encode(), issuer="softcodes.ai", audience="vscode-extension"
    )
    forged = forger.sign(
        build_claims(
            "user_forged",
            None,
            TOKEN_TYPE_ACCESS,
            None,
            issuer="softcodes.ai",
            audience="vscode-extension",
            ttl_seconds=600,
        )
    )

    migrating = make_world(db_url, fake_clerk, JWT_SIGNING_KEYS=keys, JWT_ACCEPT_HS256="true")
    switched_off = make_world(db_url, fake_clerk, JWT_SIGNING_KEYS=keys, JWT_ACCEPT_HS256="false")
    try:
        # During the migration HS256 tokens still verify...
        assert _validate(migrating, forged).status_code == 200
        # ...after the switch-off none does, while ES256 tokens do.
        r = _validate(switched_off, forged)
        assert r.status_code == 401 and r.json()["error"] == "alg_not_allowed"
        user = switched_off.user()
        es256 = switched_off.client.post(
            "/api/dashboard-token/generate", headers=switched_off.clerk_auth(user)
        ).json()["token"]
        assert _validate(switched_off, es256).status_code == 200
        assert _validate(migrating, es256).status_code == 200
        # The Python integration reads the same setting.
        verifier = TokenVerifier.from_env(
            {"JWT_SECRET": JWT_SECRET, "JWT_SIGNING_KEYS": keys, "JWT_ACCEPT_HS256": "false"}
        )
        with pytest.raises(InvalidTokenError):
            verifier.verify(forged)
        assert verifier.verify(es256).sub == user
    finally:
        for w in (migrating, switched_off):
            w.close()
            w.issuer.close()
    # Without ES256 keys the switch-off would refuse everything: start-up stops.
    with pytest.raises(ConfigError) as caught:
        load_settings(issuer_env(db_url, fake_clerk, JWT_ACCEPT_HS256="false"))
    assert "JWT_ACCEPT_HS256" in str(caught.value)


def test_L12_es256_keys_refuse_hs256_by_default_at_validate_and_in_the_integration(
    db_url: str, fake_clerk: Any
) -> None:
    import json

    import pytest

    from issuer.claims import TOKEN_TYPE_ACCESS, build_claims
    from issuer.signing import KeyRing, generate_es256_jwk
    from support.world import JWT_SECRET, make_world

    keys = json.dumps({"keys": [generate_es256_jwk("es-l12")]})
    forger = KeyRing(
        hmac_secret=JWT_SECRET.encode(), issuer="softcodes.ai", audience="vscode-extension"
    )
    forged = forger.sign(
        build_claims(
            "user_forged",
            None,
            TOKEN_TYPE_ACCESS,
            None,
            issuer="softcodes.ai",
            audience="vscode-extension",
            ttl_seconds=600,
        )
    )
    # No JWT_ACCEPT_HS256 at all: ES256 keys are enough to refuse JWT_SECRET's tokens.
    world = make_world(db_url, fake_clerk, JWT_SIGNING_KEYS=keys)
    try:
        r = _validate(world, forged)
        assert (r.status_code, r.json()["error"]) == (401, "alg_not_allowed"), r.text
        verifier = TokenVerifier.from_env({"JWT_SECRET": JWT_SECRET, "JWT_SIGNING_KEYS": keys})
        with pytest.raises(InvalidTokenError):
            verifier.verify(forged)
        enabled = TokenVerifier.from_env(
            {"JWT_SECRET": JWT_SECRET, "JWT_SIGNING_KEYS": keys, "JWT_ACCEPT_HS256": "true"}
        )
        assert enabled.verify(forged).sub == "user_forged"
    finally:
        world.close()
        world.issuer.close()


# -- L4: lifetimes are maxima ------------------------------------------------------------------


def test_L4_extension_token_ttl_caps_expires_in_days_and_the_page_offers_only_that(
    db_url: str, fake_clerk: Any
) -> None:
    import re

    from support.world import make_world

    short = make_world(db_url, fake_clerk, EXTENSION_TOKEN_TTL=str(30 * 86_400))
    try:
        user = short.user()
        auth = short.clerk_auth(user)
        r = short.client.post(
            "/api/extension-token/generate", json={"expires_in_days": 365}, headers=auth
        )
        assert r.status_code == 400, r.text
        assert "between 1 and 30" in r.json()["error_description"]
        r = short.client.post(
            "/api/extension-token/generate", json={"expires_in_days": 30}, headers=auth
        )
        assert r.status_code == 201
        claims = r.json()["claims"]
        assert claims["exp"] - claims["iat"] == 30 * 86_400
        page = short.client.get(
            "/dashboard/tokens",
            headers={"Cookie": f"__session={short.session(user)}"},
            follow_redirects=False,
        )
        assert page.status_code == 200, page.text
        offered = {int(v) for v in re.findall(r'<option value="(\d+)"', page.text)}
        assert offered and max(offered) <= 30, offered
        assert "30 days (default)" in page.text
    finally:
        short.close()
        short.issuer.close()
