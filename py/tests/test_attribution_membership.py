"""Org attribution: Clerk membership claims first, API fallback, fail closed (A2, A3, A5).

Clerk is the fake Clerk over real HTTP. The seat side is a tiny in-test
stand-in for ``rpc.resolve_org_attribution`` that only lets these tests
observe *whether and how often* the RPC is called; seat gating itself (A1) is
decided by Postgres and tested against the real database elsewhere.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from issuer.attribution import (
    AttributionRpc,
    resolve_org_attribution_claims,
    resolve_org_membership,
)
from issuer.claims import TOKEN_TYPE_ACCESS, build_claims
from issuer.clerk import ClerkClient, ClerkSession, ClerkSessionVerifier
from issuer.errors import BadRequest, ClerkUnavailable, OrgScopeDenied
from issuer.rpc_generated import OrgAttribution as AttributionRow
from issuer.signing import KeyRing
from issuer_dev.fake_clerk import FakeClerk

ORG_ID_UUID = "7d0e3c1a-3f5e-4d5e-9a43-2b1f3c4d5e6f"
SEAT_ID_UUID = "0b8f1c2d-1111-4222-8333-944455566677"


class SeatsStandIn:
    """Answers like ``resolve_org_attribution`` for the seats it was given; counts calls."""

    def __init__(self, *active_seats: tuple[str, str]) -> None:
        self.active = set(active_seats)
        self.calls: list[tuple[str, str]] = []

    def resolve_org_attribution(
        self, *, p_clerk_user_id: str, p_clerk_org_id: str
    ) -> AttributionRow | None:
        clerk_user_id, clerk_org_id = p_clerk_user_id, p_clerk_org_id
        self.calls.append((clerk_user_id, clerk_org_id))
        if (clerk_user_id, clerk_org_id) not in self.active:
            return None
        return AttributionRow(
            pool="organization",
            clerk_org_id=clerk_org_id,
            organization_id=uuid.UUID(ORG_ID_UUID),
            organization_name="Acme",
            stripe_customer_id="cus_acme",
            organization_subscription_id=None,
            seat_id=uuid.UUID(SEAT_ID_UUID),
            seat_role="member",
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeClerk]:
    with FakeClerk() as clerk:
        clerk.add_membership("user_alice", "org_acme", "Acme", role="org:admin")
        clerk.add_membership("user_alice", "org_beta", "Beta", role="org:member")
        # Many memberships, so the one we look for is beyond the first page.
        for i in range(11):
            clerk.add_membership("user_bob", f"org_filler_{i:02d}", f"Filler {i}")
        clerk.add_membership("user_bob", "org_acme", "Acme", role="admin")
        clerk.add_user("user_carol")
        yield clerk


@pytest.fixture(autouse=True)
def healthy(fake: FakeClerk) -> Iterator[None]:
    fake.fail_with(None)
    fake.delay(0)
    yield
    fake.fail_with(None)
    fake.delay(0)
    fake.reset_calls()


@pytest.fixture(scope="module")
def verifier(fake: FakeClerk) -> Iterator[ClerkSessionVerifier]:
    v = ClerkSessionVerifier(fake.jwks_url)
    yield v
    v.close()


@pytest.fixture
def clerk(fake: FakeClerk) -> Iterator[ClerkClient]:
    with ClerkClient(fake.api_url, fake.secret_key, timeout=0.5, page_size=5) as client:
        yield client


def session(
    fake: FakeClerk, verifier: ClerkSessionVerifier, user_id: str, **kwargs: Any
) -> ClerkSession:
    """A real, verified session from a fake-Clerk token."""
    verified = verifier.verify(fake.session_token(user_id, **kwargs))
    fake.reset_calls()  # JWKS fetches are not Backend API calls; start counting here
    return verified


# -- A2: claims first ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 1])
def test_A2_active_org_in_claims_means_no_api_call(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient, version: int
) -> None:
    alice = session(fake, verifier, "user_alice", version=version, org_id="org_acme")
    membership = resolve_org_membership(alice, "org_acme", clerk)
    assert membership is not None
    assert (membership.org_id, membership.role) == ("org_acme", "org:admin")
    assert fake.api_calls == 0


def test_A2_other_org_asks_the_api(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    alice = session(fake, verifier, "user_alice", org_id="org_acme")
    membership = resolve_org_membership(alice, "org_beta", clerk)
    assert membership is not None
    assert (membership.org_id, membership.role, membership.org_name) == (
        "org_beta",
        "org:member",
        "Beta",
    )
    assert fake.api_calls == 1


def test_A2_api_fallback_pages_beyond_the_first_page(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    bob = session(fake, verifier, "user_bob")  # no active org in the token
    membership = resolve_org_membership(bob, "org_acme", clerk)
    assert membership is not None
    assert membership.role == "org:admin"  # legacy 'admin' from the API, normalized (A5)
    # 12 memberships, 5 per page: org_acme is the 12th, on page 3.
    assert fake.calls("/v1/users/user_bob/organization_memberships") == 3


def test_A2_not_a_member_after_reading_every_page(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    bob = session(fake, verifier, "user_bob")
    assert resolve_org_membership(bob, "org_gamma", clerk) is None
    assert fake.api_calls == 3


def test_empty_org_id_is_a_bad_request(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    with pytest.raises(BadRequest):
        resolve_org_membership(session(fake, verifier, "user_alice"), "", clerk)


# -- A3: fail closed ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_A3_clerk_5xx_fails_closed_and_is_logged(
    fake: FakeClerk,
    verifier: ClerkSessionVerifier,
    clerk: ClerkClient,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    alice = session(fake, verifier, "user_alice", org_id="org_acme")
    fake.fail_with(status)
    caplog.set_level(logging.WARNING)
    seats = SeatsStandIn(("user_alice", "org_beta"))

    assert resolve_org_membership(alice, "org_beta", clerk) is None
    result = resolve_org_attribution_claims(alice, "org_beta", clerk=clerk, rpc=seats)
    assert result.attribution is None
    assert result.denied_reason == "clerk_unavailable"
    assert seats.calls == []
    assert "Clerk unavailable" in caplog.text
    assert f"HTTP {status}" in caplog.text


def test_A3_clerk_timeout_fails_closed(
    fake: FakeClerk,
    verifier: ClerkSessionVerifier,
    clerk: ClerkClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = session(fake, verifier, "user_alice")
    fake.delay(2)
    caplog.set_level(logging.WARNING)
    result = resolve_org_attribution_claims(
        alice, "org_beta", clerk=clerk, rpc=SeatsStandIn(("user_alice", "org_beta"))
    )
    assert (result.attribution, result.denied_reason) == (None, "clerk_unavailable")
    assert "Timeout" in caplog.text


def test_A3_raise_on_unavailable_re_raises(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    alice = session(fake, verifier, "user_alice")
    fake.fail_with(502)
    with pytest.raises(ClerkUnavailable):
        resolve_org_membership(alice, "org_beta", clerk, raise_on_unavailable=True)


def test_A3_claims_first_still_works_while_the_api_is_down(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    alice = session(fake, verifier, "user_alice", org_id="org_acme")
    fake.fail_with(503)
    seats = SeatsStandIn(("user_alice", "org_acme"))
    result = resolve_org_attribution_claims(alice, "org_acme", clerk=clerk, rpc=seats)
    assert result.attribution is not None
    assert fake.api_calls == 0


# -- membership, then seat, then org_role ----------------------------------------------------------


def test_member_with_active_seat_gets_attribution_with_clerk_role(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    alice = session(fake, verifier, "user_alice", version=1, org_id="org_acme")
    seats = SeatsStandIn(("user_alice", "org_acme"))
    result = resolve_org_attribution_claims(alice, "org_acme", clerk=clerk, rpc=seats)
    attribution = result.require()
    assert result.denied_reason is None
    assert attribution.clerk_org_id == "org_acme"
    assert attribution.organization_id == ORG_ID_UUID
    assert attribution.seat_id == SEAT_ID_UUID
    assert attribution.seat_role == "member"  # the database's seat role
    assert attribution.org_role == "org:admin"  # Clerk's org role (A5)
    assert seats.calls == [("user_alice", "org_acme")]  # exactly one round trip
    assert fake.api_calls == 0


def test_A5_role_from_the_api_fallback_is_normalized(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    bob = session(fake, verifier, "user_bob")
    result = resolve_org_attribution_claims(
        bob, "org_acme", clerk=clerk, rpc=SeatsStandIn(("user_bob", "org_acme"))
    )
    assert result.require().org_role == "org:admin"


def test_not_a_member_never_reaches_the_database(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    carol = session(fake, verifier, "user_carol")
    seats = SeatsStandIn(("user_carol", "org_acme"))  # a seat without membership
    result = resolve_org_attribution_claims(carol, "org_acme", clerk=clerk, rpc=seats)
    assert (result.attribution, result.denied_reason) == (None, "not_a_member")
    assert seats.calls == []
    with pytest.raises(OrgScopeDenied) as caught:
        result.require()
    assert caught.value.reason == "not_a_member"
    assert (caught.value.code, caught.value.status) == ("org_scope_denied", 403)


def test_member_without_active_seat_gets_no_attribution(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    alice = session(fake, verifier, "user_alice", org_id="org_acme")
    seats = SeatsStandIn()
    result = resolve_org_attribution_claims(alice, "org_acme", clerk=clerk, rpc=seats)
    assert (result.attribution, result.denied_reason) == (None, "no_active_seat")
    assert seats.calls == [("user_alice", "org_acme")]


def test_rpc_answering_for_another_org_is_a_bug_not_a_token(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    class Confused(SeatsStandIn):
        def resolve_org_attribution(
            self, *, p_clerk_user_id: str, p_clerk_org_id: str
        ) -> AttributionRow | None:
            row = super().resolve_org_attribution(
                p_clerk_user_id=p_clerk_user_id, p_clerk_org_id="org_acme"
            )
            return None if row is None else dataclasses.replace(row, clerk_org_id="org_other")

    alice = session(fake, verifier, "user_alice", org_id="org_acme")
    with pytest.raises(ValueError, match="another organization"):
        resolve_org_attribution_claims(
            alice, "org_acme", clerk=clerk, rpc=Confused(("user_alice", "org_acme"))
        )


def test_attribution_flows_into_a_signed_org_token(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clerk: ClerkClient
) -> None:
    alice = session(fake, verifier, "user_alice", org_id="org_acme", email="a@example.com")
    rpc: AttributionRpc = SeatsStandIn(("user_alice", "org_acme"))
    attribution = resolve_org_attribution_claims(alice, "org_acme", clerk=clerk, rpc=rpc).require()
    keys = KeyRing(hmac_secret=b"k" * 32, issuer="softcodes.ai", audience="vscode-extension")
    claims = build_claims(
        alice.user_id,
        alice.email,
        TOKEN_TYPE_ACCESS,
        attribution,
        issuer=keys.issuer,
        audience=keys.audience,
        ttl_seconds=3600,
    )
    verified = keys.verify(keys.sign(claims), expected_type=TOKEN_TYPE_ACCESS)
    assert verified.pool == "organization"
    assert (verified.clerk_org_id, verified.seat_id, verified.org_role) == (
        "org_acme",
        SEAT_ID_UUID,
        "org:admin",
    )
    assert verified.email == "a@example.com"
