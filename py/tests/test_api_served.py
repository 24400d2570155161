"""The same API through a real `issuer serve` process on loopback (uvicorn, real sockets)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import Served, issuer_serve
from support.world import CLIENT_ID, REDIRECT_URI, World, issuer_env, pkce_pair


@pytest.fixture(scope="module")
def served(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with issuer_serve(issuer_env(world.db_url, fake_clerk), tmp_path_factory.mktemp("serve")) as s:
        yield s


def test_pkce_sign_in_and_metered_usage_over_real_http(world: World, served: Served) -> None:
    org = world.org(pool=20, name="Acme Inc")
    alice = world.user()
    world.seat(org, alice, role="owner")
    verifier, challenge = pkce_pair()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        r = http.post(
            "/api/auth/complete-vscode-auth",
            json={
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "state": "xyz",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "clerk_org_id": org,
            },
            headers=world.clerk_auth(alice),
        )
        assert r.status_code == 200, r.text
        r = http.post(
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
        access = r.json()["access_token"]
        headers = {"Authorization": f"Bearer {access}", "Idempotency-Key": "served-1"}
        r = http.post(
            "/api/extension/usage", json={"amount": 5, "description": "x"}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert r.json()["remaining"] == 15
        r = http.post(
            "/api/extension/usage", json={"amount": 5, "description": "x"}, headers=headers
        )
        assert r.json()["replayed"] is True
        r = http.post(
            "/api/extension/usage",
            json={"amount": 50, "description": "big"},
            headers={"Authorization": f"Bearer {access}"},
        )
        assert r.status_code == 402
        assert r.json()["organization_name"] == "Acme Inc"
        assert http.get("/healthz").json() == {"status": "ok"}
        big = http.post(
            "/api/extension/usage",
            content=b"{" * 70_000,
            headers={"Authorization": f"Bearer {access}", "Content-Type": "application/json"},
        )
        assert big.status_code == 413
    assert world.pool_balance(org) == 15
    assert world.consistency_problems() == []


def test_R1_served_metadata_issuer_is_where_it_is_served(served: Served) -> None:
    """`issuer serve` on loopback: ISSUER_URL defaults to http://127.0.0.1:<port> (RFC 8414 §3.3)."""
    with httpx.Client(base_url=served.url, timeout=10) as http:
        metadata = http.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == served.url
    assert metadata["token_endpoint"] == served.url + "/api/extension/auth/token"
    assert metadata["authorization_response_iss_parameter_supported"] is True
