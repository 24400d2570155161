"""POST /api/extension/usage end to end: fake Clerk, real database, real app.

Covers A1 (seat gating at issuance), A4 (org from the token only), C2 (no
personal fallback), C3 (seat re-checked at deduction), C4 (idempotency).
"""

from __future__ import annotations

from decimal import Decimal

from support.world import World


def _spend(world: World, token: str, amount: object = 1, key: str | None = None, **body: object):
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return world.client.post(
        "/api/extension/usage",
        json={"amount": amount, "description": "completion", **body},
        headers=headers,
    )


def test_org_token_spends_the_org_pool(world: World) -> None:
    org = world.org(pool=100, name="Acme Inc")
    alice = world.user(personal=5)
    world.seat(org, alice, role="owner")
    token = world.extension_token(alice, org)

    r = _spend(world, token, 2.5)
    assert r.status_code == 200, r.text
    assert r.json()["pool"] == "organization"
    assert r.json()["remaining"] == 97.5
    assert world.pool_balance(org) == Decimal("97.5")
    assert world.personal_balance(alice) == Decimal(5)
    assert world.consistency_problems() == []


def test_personal_token_spends_personal_credits(world: World) -> None:
    dave = world.user(personal=10)
    token = world.extension_token(dave)
    r = _spend(world, token, 3)
    assert r.status_code == 200, r.text
    assert r.json()["pool"] == "personal"
    assert world.personal_balance(dave) == Decimal(7)


def test_A1_suspended_seat_gets_a_personal_token_and_says_why(world: World) -> None:
    org = world.org(pool=100)
    carol = world.user(personal=1)
    world.seat(org, carol, status="suspended")
    r = world.client.post(
        "/api/extension-token/generate",
        json={"clerk_org_id": org},
        headers=world.clerk_auth(carol),
    )
    assert r.status_code == 201, r.text
    assert r.json()["claims"]["pool"] == "personal"
    assert r.json()["org_scope_denied"] == {"clerk_org_id": org, "reason": "no_active_seat"}

    r = world.client.post(
        "/api/extension-token/generate",
        json={"clerk_org_id": org, "require_org": True},
        headers=world.clerk_auth(carol),
    )
    assert r.status_code == 403
    assert r.json()["error"] == "org_scope_denied"
    assert r.json()["reason"] == "no_active_seat"


def test_C2_no_personal_fallback_when_the_pool_is_empty(world: World) -> None:
    org = world.org(pool=1, name="Empty Co")
    bob = world.user(personal=1000)
    world.seat(org, bob)
    token = world.extension_token(bob, org)
    r = _spend(world, token, 5)
    assert r.status_code == 402
    assert r.json() == {
        "error": "insufficient_credits",
        "pool": "organization",
        "organization_name": "Empty Co",
    }
    assert world.personal_balance(bob) == Decimal(1000)
    assert world.pool_balance(org) == Decimal(1)


def test_C3_seat_revoked_after_minting_cannot_spend(world: World) -> None:
    org = world.org(pool=100)
    bob = world.user()
    world.seat(org, bob)
    token = world.extension_token(bob, org)
    assert _spend(world, token, 1).status_code == 200
    world.set_seat(org, bob, "revoked")
    r = _spend(world, token, 1)
    assert r.status_code == 403
    assert r.json()["error"] == "no_active_seat"
    assert world.pool_balance(org) == Decimal(99)


def test_A4_org_in_the_body_is_rejected_and_never_used(world: World) -> None:
    rich = world.org(pool=1000)
    mallory = world.user(personal=10)
    token = world.extension_token(mallory)  # personal token
    r = _spend(world, token, 1, clerk_org_id=rich)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert world.pool_balance(rich) == Decimal(1000)
    assert world.personal_balance(mallory) == Decimal(10)


def test_C4_retry_with_the_same_idempotency_key_is_charged_once(world: World) -> None:
    org = world.org(pool=50)
    alice = world.user()
    world.seat(org, alice)
    token = world.extension_token(alice, org)
    first = _spend(world, token, 4, key="req-1")
    second = _spend(world, token, 4, key="req-1")
    assert first.status_code == second.status_code == 200
    assert first.json()["replayed"] is False
    assert second.json()["replayed"] is True
    assert second.json()["transaction_id"] == first.json()["transaction_id"]
    assert world.pool_balance(org) == Decimal(46)
    conflict = _spend(world, token, 5, key="req-1")
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "idempotency_key_reused"
    assert world.pool_balance(org) == Decimal(46)


def test_bad_amounts_are_400_and_write_nothing(world: World) -> None:
    dave = world.user(personal=10)
    token = world.extension_token(dave)
    for amount in (0, -1, "NaN", "Infinity", "1e30", "0.00001", True, None, "abc"):
        r = _spend(world, token, amount)
        assert r.status_code == 400, (amount, r.status_code, r.text)
        assert r.json()["error"] == "invalid_request"
    assert world.personal_balance(dave) == Decimal(10)


def test_usage_needs_our_token(world: World) -> None:
    dave = world.user(personal=10)
    r = world.client.post(
        "/api/extension/usage",
        json={"amount": 1, "description": "x"},
        headers=world.clerk_auth(dave),  # a Clerk session is not our token
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    assert world.client.post("/api/extension/usage", json={}).status_code == 401


def test_every_kind_of_response_carries_the_security_headers(world: World) -> None:
    """200, refusals, 401, 400, 404, 405, the BodyLimit refusals and a 500."""
    from fastapi.testclient import TestClient

    from issuer.api.app import SECURITY_HEADERS, create_app

    dave = world.user(personal=1)
    token = world.extension_token(dave)
    app = create_app(world.issuer)

    def boom() -> None:
        raise RuntimeError("unexpected")

    app.add_api_route("/boom", boom)
    client = TestClient(app, raise_server_exceptions=False)
    responses = {
        200: _spend(world, token, 1),
        402: _spend(world, token, 5),
        401: client.post("/api/extension/usage", json={}),
        400: client.post(
            "/api/extension/usage",
            json={"description": "x"},
            headers={"Authorization": f"Bearer {token}"},
        ),
        404: client.get("/no/such/path"),
        405: client.get("/api/extension/usage"),
        413: client.post("/api/extension/usage", content=b"x" * 70_000),
        414: client.get("/" + "a" * 9_000),
        431: client.get("/healthz", headers={"X-Big": "a" * 13_000}),
        500: client.get("/boom"),
    }
    for status, r in responses.items():
        assert r.status_code == status, (status, r.text)
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (status, name, r.headers)


def test_idempotency_key_of_1_to_200_characters(world: World) -> None:
    """The route's declared header limit is spend's (MAX_IDEMPOTENCY_KEY)."""
    from issuer.flows.usage import MAX_IDEMPOTENCY_KEY

    org = world.org(pool=10)
    erin = world.user()
    world.seat(org, erin)
    token = world.extension_token(erin, org)
    assert _spend(world, token, 1, key="k" * MAX_IDEMPOTENCY_KEY).status_code == 200
    for key in ("k" * (MAX_IDEMPOTENCY_KEY + 1),):
        r = _spend(world, token, 1, key=key)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
    r = world.client.post(
        "/api/extension/usage",
        json={"amount": 1, "description": "x"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": ""},
    )
    assert r.status_code == 400, r.text
    assert world.pool_balance(org) == 9
