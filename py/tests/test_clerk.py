"""Clerk session tokens and the memberships API, against the fake Clerk over real HTTP.

The fake (``issuer_dev.fake_clerk``) exists because Clerk cannot be reached
from tests; it serves Clerk's JWKS and Backend API wire formats.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from issuer.clerk import ClerkClient, ClerkSessionVerifier, normalize_org_role
from issuer.errors import ClerkUnavailable, ConfigError, InvalidToken
from issuer.settings import load_settings
from issuer_dev.fake_clerk import FakeClerk

APP = "http://localhost:3000"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeClerk]:
    with FakeClerk() as clerk:
        clerk.add_user("user_alice", email="alice@example.com")
        clerk.add_membership("user_alice", "org_acme", "Acme", role="org:admin")
        clerk.add_membership("user_alice", "org_beta", "Beta", role="org:member")
        clerk.add_user("user_nobody")
        yield clerk


@pytest.fixture(autouse=True)
def healthy(fake: FakeClerk) -> Iterator[None]:
    fake.fail_with(None)
    fake.delay(0)
    fake.reset_calls()
    yield
    fake.fail_with(None)
    fake.delay(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(fake: FakeClerk, clock: Clock) -> Iterator[ClerkSessionVerifier]:
    v = ClerkSessionVerifier(fake.jwks_url, authorized_parties=[APP], timeout=2, clock=clock)
    yield v
    v.close()


@pytest.fixture
def client(fake: FakeClerk) -> Iterator[ClerkClient]:
    with ClerkClient(fake.api_url, fake.secret_key, timeout=2) as c:
        yield c


def reason(excinfo: pytest.ExceptionInfo[InvalidToken]) -> str:
    return excinfo.value.reason


# -- session tokens --------------------------------------------------------------------------


def test_v2_session_with_active_org(fake: FakeClerk, verifier: ClerkSessionVerifier) -> None:
    token = fake.session_token(
        "user_alice", org_id="org_acme", session_id="sess_1", email="alice@example.com"
    )
    assert jwt.decode(token, options={"verify_signature": False})["o"]["rol"] == "admin"
    session = verifier.verify(token)
    assert session.user_id == "user_alice"
    assert session.session_id == "sess_1"
    assert session.email == "alice@example.com"
    assert (session.active_org_id, session.active_org_role) == ("org_acme", "org:admin")
    assert session.version == 2


def test_v1_session_with_active_org(fake: FakeClerk, verifier: ClerkSessionVerifier) -> None:
    token = fake.session_token("user_alice", version=1, org_id="org_beta")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["org_id"], claims["org_role"]) == ("org_beta", "org:member")
    session = verifier.verify(token)
    assert (session.active_org_id, session.active_org_role) == ("org_beta", "org:member")
    assert session.version == 1
    assert session.email is None


def test_session_without_active_org(fake: FakeClerk, verifier: ClerkSessionVerifier) -> None:
    for version in (1, 2):
        session = verifier.verify(fake.session_token("user_alice", version=version))
        assert (session.active_org_id, session.active_org_role) == (None, None)


def test_verifier_fetches_jwks_once_and_caches_by_kid(
    fake: FakeClerk, verifier: ClerkSessionVerifier
) -> None:
    for _ in range(5):
        verifier.verify(fake.session_token("user_alice"))
    assert verifier.fetch_count == 1
    assert fake.calls("/.well-known/jwks.json") == 1


def test_unknown_kid_one_bounded_refresh(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clock: Clock
) -> None:
    verifier.verify(fake.session_token("user_alice"))
    with pytest.raises(InvalidToken):  # just fetched: no refresh at all
        verifier.verify(fake.session_token("user_alice", kid="ins_made_up"))
    assert fake.calls("/.well-known/jwks.json") == 1
    clock.now += 31
    for _ in range(20):
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(fake.session_token("user_alice", kid="ins_made_up"))
        assert reason(caught) == "unknown_kid"
    assert fake.calls("/.well-known/jwks.json") == 2  # one refresh for twenty tokens
    clock.now += 31
    with pytest.raises(InvalidToken):
        verifier.verify(fake.session_token("user_alice", kid="ins_made_up"))
    assert fake.calls("/.well-known/jwks.json") == 3


def test_rotated_clerk_key_found_by_refresh(
    fake: FakeClerk, verifier: ClerkSessionVerifier, clock: Clock
) -> None:
    verifier.verify(fake.session_token("user_alice"))
    old_kid = fake.kid
    try:
        fake.rotate_key()
        clock.now += 31
        assert verifier.verify(fake.session_token("user_alice")).user_id == "user_alice"
    finally:
        fake.kid = old_kid


def test_backend_api_jwks_needs_and_gets_the_secret(fake: FakeClerk) -> None:
    settings = load_settings(
        {
            "JWT_SECRET": "x" * 32,
            "CLERK_API_URL": fake.api_url,
            "CLERK_SECRET_KEY": fake.secret_key,
            "CLERK_JWKS_URL": fake.backend_jwks_url,
        }
    )
    verifier = ClerkSessionVerifier.from_settings(settings)
    assert verifier.verify(fake.session_token("user_alice")).user_id == "user_alice"
    anonymous = ClerkSessionVerifier(fake.backend_jwks_url)
    with pytest.raises(ClerkUnavailable):
        anonymous.verify(fake.session_token("user_alice"))
    with pytest.raises(ConfigError, match="CLERK_JWKS_URL"):
        ClerkSessionVerifier.from_settings(load_settings({"JWT_SECRET": "x" * 32}))


def test_only_rs256_is_accepted(fake: FakeClerk, verifier: ClerkSessionVerifier) -> None:
    claims = jwt.decode(fake.session_token("user_alice"), options={"verify_signature": False})
    hs = jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": fake.kid})
    none = jwt.encode(claims, "", algorithm="none", headers={"kid": fake.kid})
    for token in (hs, none):
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(token)
        assert reason(caught) == "alg_not_allowed"


def test_signature_by_another_key_with_clerks_kid_rejected(
    fake: FakeClerk, verifier: ClerkSessionVerifier
) -> None:
    claims = jwt.decode(fake.session_token("user_alice"), options={"verify_signature": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": fake.kid})
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(forged)
    assert reason(caught) == "bad_signature"


def test_expiry_allows_at_most_5s_skew(fake: FakeClerk, verifier: ClerkSessionVerifier) -> None:
    assert verifier.verify(fake.session_token("user_alice", exp_in=-2)).user_id == "user_alice"
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(fake.session_token("user_alice", exp_in=-6))
    assert reason(caught) == "expired"
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(fake.session_token("user_alice", iat_offset=30))
    assert reason(caught) == "not_yet_valid"
    with pytest.raises(ValueError, match="leeway"):
        ClerkSessionVerifier(fake.jwks_url, leeway=30)


def test_azp_must_be_an_authorized_party(fake: FakeClerk, verifier: ClerkSessionVerifier) -> None:
    for azp in ("https://evil.example", None):
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(fake.session_token("user_alice", azp=azp))
        assert reason(caught) == "unauthorized_party"
    unrestricted = ClerkSessionVerifier(fake.jwks_url)
    assert unrestricted.verify(fake.session_token("user_alice", azp="https://any")).version == 2


def test_pending_session_refused(fake: FakeClerk, verifier: ClerkSessionVerifier) -> None:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(fake.session_token("user_alice", sts="pending"))
    assert reason(caught) == "session_pending"
    assert verifier.verify(fake.session_token("user_alice", sts="active")).version == 2


def test_jwks_unreachable_is_clerk_unavailable(fake: FakeClerk) -> None:
    fake.fail_with(503, jwks=True)
    verifier = ClerkSessionVerifier(fake.jwks_url)
    with pytest.raises(ClerkUnavailable):
        verifier.verify(fake.session_token("user_alice"))
    fake.fail_with(None)
    with pytest.raises(ClerkUnavailable):  # still within the refresh interval, nothing cached
        verifier.verify(fake.session_token("user_alice"))


# -- A5 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("org:admin", "org:admin"),
        ("admin", "org:admin"),
        ("org:member", "org:member"),
        ("member", "org:member"),
        ("basic_member", "org:member"),
        ("org:billing", "org:billing"),
        ("billing", "org:billing"),
        ("", None),
        (None, None),
    ],
)
def test_A5_roles_normalize(raw: str | None, normalized: str | None) -> None:
    assert normalize_org_role(raw) == normalized


def test_A5_v1_org_admin_and_v2_admin_both_read_as_org_admin(
    fake: FakeClerk, verifier: ClerkSessionVerifier, client: ClerkClient
) -> None:
    v1 = verifier.verify(fake.session_token("user_alice", version=1, org_id="org_acme"))
    v2 = verifier.verify(fake.session_token("user_alice", version=2, org_id="org_acme"))
    assert v1.active_org_role == v2.active_org_role == "org:admin"
    legacy = verifier.verify(
        fake.session_token("user_alice", version=2, org_id="org_acme", org_role="basic_member")
    )
    assert legacy.active_org_role == "org:member"
    roles = {m.org_id: m.role for m in client.list_memberships("user_alice")}
    assert roles == {"org_acme": "org:admin", "org_beta": "org:member"}


# -- memberships API ------------------------------------------------------------------------


def test_memberships_are_paged_to_the_end(fake: FakeClerk) -> None:
    for i in range(12):
        fake.add_membership("user_many", f"org_{i:02d}", f"Org {i}", role="basic_member")
    fake.reset_calls()
    with ClerkClient(fake.api_url, fake.secret_key, page_size=5) as client:
        memberships = client.list_memberships("user_many")
    assert [m.org_id for m in memberships] == [f"org_{i:02d}" for i in range(12)]
    assert {m.role for m in memberships} == {"org:member"}
    assert memberships[3].org_name == "Org 3"
    assert memberships[3].membership_id is not None
    assert memberships[3].membership_id.startswith("orgmem_")
    assert fake.calls("/v1/users/user_many/organization_memberships") == 3


def test_user_without_memberships(fake: FakeClerk, client: ClerkClient) -> None:
    assert client.list_memberships("user_nobody") == []
    assert client.list_memberships("user_unknown_to_clerk") == []


def test_wrong_secret_fails_closed(fake: FakeClerk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="issuer.clerk")
    with (
        ClerkClient(fake.api_url, "sk_test_wrong") as client,
        pytest.raises(ClerkUnavailable),
    ):
        client.list_memberships("user_alice")
    assert "HTTP 401" in caplog.text
    assert "sk_test_wrong" not in caplog.text


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_A3_server_errors_raise_clerk_unavailable(
    fake: FakeClerk, client: ClerkClient, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="issuer.clerk")
    fake.fail_with(status)
    with pytest.raises(ClerkUnavailable):
        client.list_memberships("user_alice")
    assert f"HTTP {status}" in caplog.text


def test_A3_timeout_raises_clerk_unavailable(fake: FakeClerk) -> None:
    fake.delay(2)
    with (
        ClerkClient(fake.api_url, fake.secret_key, timeout=0.3) as client,
        pytest.raises(ClerkUnavailable),
    ):
        client.list_memberships("user_alice")


def test_A3_connection_refused_raises_clerk_unavailable() -> None:
    with FakeClerk() as gone:
        url, secret = gone.api_url, gone.secret_key
    with ClerkClient(url, secret, timeout=1) as client, pytest.raises(ClerkUnavailable):
        client.list_memberships("user_alice")


def test_client_from_settings_needs_the_secret(fake: FakeClerk) -> None:
    with pytest.raises(ConfigError, match="CLERK_SECRET_KEY"):
        ClerkClient.from_settings(load_settings({"JWT_SECRET": "x" * 32}))
    settings = load_settings({"JWT_SECRET": "x" * 32, **fake.env()})
    with ClerkClient.from_settings(settings) as client:
        assert len(client.list_memberships("user_alice")) == 2
