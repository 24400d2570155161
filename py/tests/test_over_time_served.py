"""Seats, accounts and payers over time (L1-L9) through a real `issuer serve` process.

``test_api_over_time.py`` shows these rules through FastAPI's in-process
client; issue 15 asks for them through the real HTTP server too. Here one
``issuer serve`` process (uvicorn, real sockets) serves the module against
this module's database (L6 starts a second one, with ES256 keys). The world
changes between requests the way it changes in production: an admin's
``set_seat_status``, a Clerk webhook applied by ``apply_clerk_event`` (what
the clerk-webhooks edge function calls), Clerk's own membership list (the
fake Clerk, over HTTP).

The served process reaches Postgres through a wire tap
(``support/pgwire_tap.py``) that records every statement it executes, so
that L8 can say what ``/healthz`` costs in another process.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from issuer.rpc_generated import ClerkEventResult
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import Served, issuer_serve
from support.pgwire_tap import PgWireTap, pgwire_tap
from support.world import (
    CLIENT_ID,
    World,
    approve_pkce,
    issuer_env,
    pkce_sign_in,
)

#: EXTENSION_TOKEN_TTL of the served process (L4): 30 days.
TTL_DAYS = 30


@pytest.fixture(scope="module")
def tap(world: World) -> Iterator[PgWireTap]:
    with pgwire_tap(world.db_url) as t:
        yield t


@pytest.fixture(scope="module")
def served(
    world: World,
    fake_clerk: FakeClerk,
    tap: PgWireTap,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    env = issuer_env(tap.url(world.db_url), fake_clerk, EXTENSION_TOKEN_TTL=str(TTL_DAYS * 86_400))
    with issuer_serve(env, tmp_path_factory.mktemp("over-time")) as s:
        yield s


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=20) as client:
        yield client


# -- helpers ---------------------------------------------------------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


def _approve(
    world: World, http: httpx.Client, user: str, org: str | None, **kw: Any
) -> tuple[httpx.Response, str]:
    """The browser's half of the PKCE sign-in: the approval with a Clerk session."""
    return approve_pkce(http, world, user, org, **kw)


def _signin(world: World, http: httpx.Client, user: str, org: str | None = None) -> dict[str, Any]:
    """The extension's PKCE sign-in, approval then code redemption."""
    return pkce_sign_in(http, world, user, org)


def _refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        },
    )


def _extension_token(world: World, http: httpx.Client, user: str, org: str | None = None) -> str:
    body: dict[str, Any] = {"name": "served"}
    if org:
        body["clerk_org_id"] = org
    r = http.post("/api/extension-token/generate", json=body, headers=world.clerk_auth(user))
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def _use(http: httpx.Client, token: str, amount: int, key: str | None = None) -> httpx.Response:
    headers = _bearer(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    return http.post(
        "/api/extension/usage", json={"amount": amount, "description": "served"}, headers=headers
    )


def _validate(http: httpx.Client, token: str) -> httpx.Response:
    return http.get("/api/extension/auth/validate", headers=_bearer(token))


def _now_ms(offset_seconds: float = 0) -> int:
    return int((time.time() + offset_seconds) * 1000)


def _membership_event(kind: str, user: str, org: str, at_ms: int) -> dict[str, Any]:
    """A Clerk organizationMembership.* webhook event, as Svix delivers it."""
    return {
        "type": kind,
        "object": "event",
        "timestamp": at_ms,
        "data": {
            "id": f"orgmem_{user}_{org}",
            "object": "organization_membership",
            "role": "org:member",
            "organization": {"id": org, "name": "Rejoin Inc"},
            "public_user_data": {"user_id": user, "identifier": f"{user}@example.com"},
        },
    }


def _apply_clerk_event(world: World, svix_id: str, event: dict[str, Any]) -> ClerkEventResult:
    """What the clerk-webhooks edge function does with a verified event."""
    return world.issuer.rpc.apply_clerk_event(p_svix_id=svix_id, p_event=event)


def _stored_tokens(world: World, user: str) -> tuple[int, int]:
    """(extension_tokens, refresh_tokens) rows of ``user``."""
    ((ext,),) = world.sql(
        "select count(*) from public.extension_tokens where clerk_user_id = %s", (user,)
    )
    ((ref,),) = world.sql(
        "select count(*) from public.refresh_tokens where clerk_user_id = %s", (user,)
    )
    return int(ext), int(ref)


# -- L1: an admin's hold survives leave -> rejoin in Clerk -----------------------------------


def test_L1_served_a_suspended_member_who_leaves_and_rejoins_cannot_spend_the_pool(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=50, name="Rejoin Inc")
    sam = world.user(personal=7)
    world.seat(org, sam)
    token = _extension_token(world, http, sam, org)
    assert _use(http, token, 1).status_code == 200
    # The org admin suspends Sam (set_seat_status, stamped manual).
    world.set_seat(org, sam, "suspended")
    # Sam leaves the org in Clerk and is re-invited (or auto-joins by domain):
    # both events are newer than the suspension.
    world.clerk.remove_membership(sam, org)
    left = _apply_clerk_event(
        world,
        f"msg_leave_{sam}",
        _membership_event("organizationMembership.deleted", sam, org, _now_ms(1)),
    )
    assert left.seat_status_kept == "held_by_suspended", left
    world.clerk.add_membership(sam, org)
    rejoined = _apply_clerk_event(
        world,
        f"msg_rejoin_{sam}",
        _membership_event("organizationMembership.created", sam, org, _now_ms(2)),
    )
    assert rejoined.seat_status == "suspended", rejoined
    # Over real HTTP: the pool stays closed to Sam...
    r = _use(http, token, 1)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "no_active_seat"
    # ...and a new sign-in for the org is a personal token (with the denial said).
    r, _ = _approve(world, http, sam, org)
    assert r.status_code == 200, r.text
    assert r.json()["org_scope_denied"] == {"clerk_org_id": org, "reason": "no_active_seat"}
    grant = _signin(world, http, sam, org)
    assert grant["pool"] == "personal"
    assert _claims(grant["access_token"]).get("clerk_org_id") is None
    assert _use(http, grant["access_token"], 2).json()["pool"] == "personal"
    assert world.pool_balance(org) == 49
    assert world.personal_balance(sam) == 5


# -- L2: no silent change of payer -------------------------------------------------------------


def test_L2_served_oauth_refresh_after_suspension_is_invalid_grant_and_ends_the_family(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    bob = world.user(personal=50)
    world.seat(org, bob)
    grant = _signin(world, http, bob, org)
    assert grant["pool"] == "organization"
    world.set_seat(org, bob, "suspended")
    r = _refresh(http, grant["refresh_token"])
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"].startswith("org_scope_lost")
    assert org in body["error_description"]
    assert body["clerk_org_id"] == org
    assert "access_token" not in body and "refresh_token" not in body
    # No token was issued: the family holds no live refresh token (the one
    # rotation stored was never handed out and is revoked).
    live = world.sql(
        "select count(*) from public.refresh_tokens where clerk_user_id = %s "
        "and revoked_at is null and rotated_at is null",
        (bob,),
    )
    assert live == [(0,)]
    # The family is over: a later refresh fails, even after the seat is reinstated.
    world.set_seat(org, bob, "active")
    r = _refresh(http, grant["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant"), r.text
    assert world.personal_balance(bob) == 50


def test_L2_served_oauth_refresh_after_leaving_in_clerk_is_org_scope_lost(
    world: World, http: httpx.Client
) -> None:
    """The seat row is still active; Clerk (asked over HTTP) says the membership is gone."""
    org = world.org(pool=10)
    fay = world.user(personal=50)
    world.seat(org, fay)
    grant = _signin(world, http, fay, org)
    first = _refresh(http, grant["refresh_token"])  # Clerk's answer seen once
    assert first.status_code == 200, first.text
    world.clerk.remove_membership(fay, org)
    r = _refresh(http, first.json()["refresh_token"])
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    assert r.json()["error_description"].startswith("org_scope_lost")
    assert (r.json()["clerk_org_id"], r.json()["reason"]) == (org, "not_a_member")


def test_L2_served_extension_token_refresh_of_a_lost_org_is_403_and_rotates_nothing(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    cid = world.user(personal=50)
    world.seat(org, cid)
    old = _extension_token(world, http, cid, org)
    world.set_seat(org, cid, "suspended")
    r = http.post("/api/extension-token/refresh", headers=_bearer(old))
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "org_scope_lost"
    assert r.json()["clerk_org_id"] == org
    assert "token" not in r.json()
    # Nothing rotated: one stored token, not revoked, still the old one.
    assert world.sql(
        "select count(*), count(*) filter (where revoked_at is null) "
        "from public.extension_tokens where clerk_user_id = %s",
        (cid,),
    ) == [(1, 1)]
    assert _validate(http, old).status_code == 200


def test_L2_served_session_refresh_token_of_a_lost_org_is_403_org_scope_lost(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    dee = world.user(personal=5)
    world.seat(org, dee)
    ok = http.post(
        "/api/auth/refresh-token", json={"clerk_org_id": org}, headers=world.clerk_auth(dee)
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["pool"] == "organization"
    world.set_seat(org, dee, "revoked")
    r = http.post(
        "/api/auth/refresh-token", json={"clerk_org_id": org}, headers=world.clerk_auth(dee)
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "org_scope_lost"
    assert r.json()["clerk_org_id"] == org
    assert "access_token" not in r.json() and "token" not in r.json()
    assert _stored_tokens(world, dee) == (0, 0)


def test_L2_served_a_first_request_with_require_org_for_a_denied_org_is_403_denied(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    eli = world.user()
    world.seat(org, eli, status="suspended")
    r = http.post(
        "/api/extension-token/generate",
        json={"clerk_org_id": org, "require_org": True},
        headers=world.clerk_auth(eli),
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "org_scope_denied"
    assert _stored_tokens(world, eli) == (0, 0)


# -- L3: credentials die with the account --------------------------------------------------------


def test_L3_served_user_deleted_kills_the_long_lived_token_and_the_refresh_family(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    gil = world.user()
    world.seat(org, gil)
    long_lived = _extension_token(world, http, gil, org)
    grant = _signin(world, http, gil, org)
    assert _use(http, long_lived, 1).status_code == 200
    assert _validate(http, long_lived).status_code == 200

    result = _apply_clerk_event(
        world,
        f"msg_del_{gil}",
        {
            "type": "user.deleted",
            "object": "event",
            "timestamp": _now_ms(),
            "data": {"id": gil, "object": "user", "deleted": True},
        },
    )
    assert (result.extension_tokens_revoked, result.refresh_tokens_revoked) == (1, 1)

    r = _use(http, long_lived, 1)
    assert r.status_code == 401, r.text
    assert _validate(http, long_lived).status_code == 401
    r = _refresh(http, grant["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant"), r.text
    assert "access_token" not in r.json()
    assert world.pool_balance(org) == 9


# -- L4: lifetimes are maxima ---------------------------------------------------------------------


def test_L4_served_expires_in_days_above_extension_token_ttl_is_400_and_stores_nothing(
    world: World, http: httpx.Client
) -> None:
    hana = world.user()
    r = http.post(
        "/api/extension-token/generate",
        json={"expires_in_days": TTL_DAYS + 1},
        headers=world.clerk_auth(hana),
    )
    assert r.status_code == 400, r.text
    assert f"between 1 and {TTL_DAYS}" in r.json()["error_description"]
    assert "token" not in r.json()
    assert _stored_tokens(world, hana) == (0, 0)
    r = http.post(
        "/api/extension-token/generate",
        json={"expires_in_days": TTL_DAYS},
        headers=world.clerk_auth(hana),
    )
    assert r.status_code == 201, r.text
    claims = r.json()["claims"]
    assert claims["exp"] - claims["iat"] == TTL_DAYS * 86_400


# -- L5: validation says when org claims are stale --------------------------------------------------


def test_L5_served_validate_reports_a_revoked_seat_as_lost_and_no_owner_role(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    ola = world.user()
    world.seat(org, ola, role="owner")
    long_lived = _extension_token(world, http, ola, org)
    access = _signin(world, http, ola, org)["access_token"]
    for token in (long_lived, access):
        body = _validate(http, token).json()
        assert body["org_scope"] == "active", body
        assert body["claims"]["seat_role"] == "owner"
    world.set_seat(org, ola, "revoked")
    for token in (long_lived, access):
        r = _validate(http, token)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["org_scope"] == "lost", body
        assert body["org_scope_reason"] == "no_active_seat"
        assert body["claims"]["seat_role"] != "owner"
        assert body["claims"]["org_role"] not in ("owner", "org:admin", "admin")
        assert body["claims"]["seat_role"] is None and body["claims"]["org_role"] is None


# -- L7: idempotency keys cannot be squatted ---------------------------------------------------------


def test_L7_served_two_members_with_one_idempotency_key_are_both_charged(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=100)
    ann, ben = world.user(), world.user()
    world.seat(org, ann)
    world.seat(org, ben)
    ann_token = _extension_token(world, http, ann, org)
    ben_token = _extension_token(world, http, ben, org)
    squat = _use(http, ben_token, 1, "req-shared")
    assert squat.status_code == 200 and squat.json()["replayed"] is False, squat.text
    mine = _use(http, ann_token, 5, "req-shared")
    assert mine.status_code == 200, mine.text
    assert mine.json()["replayed"] is False
    assert mine.json()["transaction_id"] != squat.json()["transaction_id"]
    # Each retry replays its own caller's request.
    again = _use(http, ann_token, 5, "req-shared")
    assert again.json()["replayed"] is True
    assert again.json()["transaction_id"] == mine.json()["transaction_id"]
    assert (
        _use(http, ben_token, 1, "req-shared").json()["transaction_id"]
        == (squat.json()["transaction_id"])
    )
    # Same caller, same key, other arguments: 409.
    assert _use(http, ann_token, 6, "req-shared").status_code == 409
    assert world.pool_balance(org) == 94


def test_L7_served_a_member_cannot_block_a_grant_by_using_its_key(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    cat = world.user()
    world.seat(org, cat)
    token = _extension_token(world, http, cat, org)
    key = f"invoice-{org}"
    assert _use(http, token, 1, key).status_code == 200
    granted = world.issuer.rpc.grant_credits(
        p_amount=50, p_description="top-up", p_clerk_org_id=org, p_idempotency_key=key
    )
    assert granted.ok and not granted.replayed
    assert world.pool_balance(org) == 59


# -- L8: health checks are cheap --------------------------------------------------------------------


def test_L8_served_healthz_is_one_trivial_query_and_never_touches_the_ledger(
    world: World, http: httpx.Client, tap: PgWireTap
) -> None:
    assert http.get("/healthz").status_code == 200  # a warm connection
    time.sleep(0.2)
    tap.take()
    for _ in range(3):
        r = http.get("/healthz")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
    time.sleep(0.2)
    # The pool's own liveness check sends the empty query; it touches nothing.
    executed = [s for s in tap.take() if s.strip()]
    assert executed == ["select 1"] * 3, executed
    # No reader of the ledger: with credit_transactions locked against every
    # reader, /healthz still answers at once.
    with psycopg.connect(world.db_url) as conn:
        conn.execute("lock table public.credit_transactions in access exclusive mode")
        answers: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: answers.append(http.get("/healthz", timeout=10)), daemon=True
        )
        started = time.monotonic()
        worker.start()
        worker.join(timeout=10)
        elapsed = time.monotonic() - started
        conn.rollback()
    assert answers and answers[0].status_code == 200, answers
    assert elapsed < 2.0, elapsed


# -- L9: tokens carry the user's email ------------------------------------------------------------


def test_L9_served_a_token_from_a_session_without_email_carries_users_email(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10)
    ivy = world.user(email="ivy@served.example")
    world.seat(org, ivy)
    session = world.session(ivy)  # Clerk's default session token: no email claim
    assert "email" not in _claims(session)
    r = http.post("/api/dashboard-token/generate", headers=_bearer(session))
    assert r.status_code == 200, r.text
    assert r.json()["claims"]["email"] == "ivy@served.example"
    r = http.post(
        "/api/dashboard-token/generate",
        json={"clerk_org_id": org},
        headers=world.clerk_auth(ivy, org_id=org),
    )
    assert r.json()["claims"]["email"] == "ivy@served.example"
    assert r.json()["claims"]["pool"] == "organization"
    grant = _signin(world, http, ivy, org)
    assert _claims(grant["access_token"])["email"] == "ivy@served.example"
    long_lived = _extension_token(world, http, ivy)
    assert _claims(long_lived)["email"] == "ivy@served.example"


# -- L6: HS256 can be switched off ------------------------------------------------------------------


def test_L6_served_with_jwt_accept_hs256_false_no_hs256_token_is_accepted(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from issuer.claims import TOKEN_TYPE_ACCESS, build_claims
    from issuer.signing import KeyRing, generate_es256_jwk
    from support.world import JWT_SECRET

    org = world.org(pool=10)
    una = world.user()
    world.seat(org, una)
    # What a holder of the old JWT_SECRET can mint: an HS256 token for anyone.
    forger = KeyRing(
        hmac_secret=JWT_SECRET.encode(), issuer="softcodes.ai", audience="vscode-extension"
    )
    claims = build_claims(
        una,
        None,
        TOKEN_TYPE_ACCESS,
        None,
        issuer="softcodes.ai",
        audience="vscode-extension",
        ttl_seconds=600,
    )
    forged = forger.sign(claims)
    keys = json.dumps({"keys": [generate_es256_jwk("es-l6-served")]})
    env = issuer_env(world.db_url, fake_clerk, JWT_SIGNING_KEYS=keys, JWT_ACCEPT_HS256="false")
    with (
        issuer_serve(env, tmp_path_factory.mktemp("l6")) as served,
        httpx.Client(base_url=served.url, timeout=20) as http,
    ):
        r = _validate(http, forged)
        assert (r.status_code, r.json()["error"]) == (401, "alg_not_allowed"), r.text
        assert _use(http, forged, 1).status_code == 401
        # ES256 tokens of this process are accepted.
        r = http.post("/api/dashboard-token/generate", headers=world.clerk_auth(una))
        assert r.status_code == 200, r.text
        es256 = r.json()["token"]
        header = es256.split(".")[0]
        assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == (
            "ES256"
        )
        assert _validate(http, es256).status_code == 200
