"""Signing and verifying our tokens (SECURITY.md T1-T6, T8, T10)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from issuer.claims import (
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_EXTENSION,
    OrgAttribution,
    TokenClaims,
    build_claims,
)
from issuer.errors import InvalidToken
from issuer.settings import load_settings
from issuer.signing import (
    KeyRing,
    generate_es256_jwk,
    generate_hs256_secret,
)

ISSUER = "softcodes.ai"
AUDIENCE = "vscode-extension"
SECRET = b"0123456789abcdef0123456789abcdef-test"
NOW = 1_750_000_000.0
ATTRIBUTION = OrgAttribution(
    clerk_org_id="org_acme",
    organization_id="7d0e3c1a-3f5e-4d5e-9a43-2b1f3c4d5e6f",
    organization_name="Acme",
    stripe_customer_id="cus_1",
    organization_subscription_id="5a4b3c2d-0000-4000-8000-000000000001",
    seat_id="0b8f1c2d-1111-4222-8333-944455566677",
    seat_role="admin",
    org_role="org:admin",
)
BOTH = {TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION}


class Clock:
    """A settable clock, so expiry is tested to the second."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ring(
    *jwks: dict[str, str],
    clock: Clock | None = None,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    **kwargs: Any,
) -> KeyRing:
    return KeyRing(
        hmac_secret=SECRET,
        issuer=issuer,
        audience=audience,
        es256_jwks=list(jwks),
        clock=clock or Clock(),
        **kwargs,
    )


def claims(
    token_type: str = TOKEN_TYPE_ACCESS,
    *,
    org: bool = False,
    now: float = NOW,
    ttl: int = 3600,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
) -> TokenClaims:
    return build_claims(
        "user_1",
        "a@example.com",
        token_type,
        ATTRIBUTION if org else None,
        issuer=issuer,
        audience=audience,
        ttl_seconds=ttl,
        now=now,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """HMAC-sign by hand: PyJWT (rightly) refuses PEM keys as HMAC secrets."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def reason(excinfo: pytest.ExceptionInfo[InvalidToken]) -> str:
    return excinfo.value.reason


@pytest.fixture(scope="module")
def k1() -> dict[str, str]:
    return generate_es256_jwk("k1")


@pytest.fixture(scope="module")
def k2() -> dict[str, str]:
    return generate_es256_jwk("k2")


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "ES256"])
@pytest.mark.parametrize("token_type", [TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION])
@pytest.mark.parametrize("org", [False, True])
def test_round_trip_mint_then_verify(
    alg: str, token_type: str, org: bool, k1: dict[str, str]
) -> None:
    keys = ring(k1) if alg == "ES256" else ring()
    assert keys.signing_alg == alg
    minted = claims(token_type, org=org)
    token = keys.sign(minted)

    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg
    assert header["typ"] == ("at+jwt" if token_type == TOKEN_TYPE_ACCESS else "JWT")
    assert header.get("kid") == ("k1" if alg == "ES256" else None)
    assert keys.verify(token, expected_type=token_type) == minted
    assert keys.verify(token, expected_type=BOTH) == minted


def test_es256_ring_still_verifies_hs256_tokens(k1: dict[str, str]) -> None:
    """Tokens of the original system (HS256) stay valid after moving to ES256."""
    old = ring().sign(claims())
    assert ring(k1).verify(old, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"


def test_from_settings_signs_with_the_configured_algorithm(k1: dict[str, str]) -> None:
    base = {"JWT_SECRET": SECRET.decode(), "JWT_ISSUER": "iss.example"}
    hs = KeyRing.from_settings(load_settings(base))
    es = KeyRing.from_settings(load_settings({**base, "JWT_SIGNING_KEYS": json.dumps([k1])}))
    assert (hs.signing_alg, hs.signing_kid) == ("HS256", None)
    assert (es.signing_alg, es.signing_kid) == ("ES256", "k1")
    token = es.sign(claims(issuer="iss.example", now=time.time()))
    assert es.verify(token, expected_type=TOKEN_TYPE_ACCESS).iss == "iss.example"


# -- T1 ---------------------------------------------------------------------------------


def test_T1_alg_none_rejected(k1: dict[str, str]) -> None:
    payload = claims().to_dict()
    unsigned = jwt.encode(payload, "", algorithm="none", headers={"typ": "at+jwt"})
    for keys in (ring(), ring(k1)):
        with pytest.raises(InvalidToken) as caught:
            keys.verify(unsigned, expected_type=TOKEN_TYPE_ACCESS)
        assert reason(caught) == "alg_not_allowed"
    stripped = unsigned.rstrip(".") + "."
    with pytest.raises(InvalidToken):
        ring().verify(stripped, expected_type=TOKEN_TYPE_ACCESS)


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS256", "ES384", "PS256", "EdDSA", "NONE"])
def test_T1_algorithms_outside_the_allow_list_rejected(alg: str) -> None:
    header = {"alg": alg, "typ": "at+jwt"}
    token = forge_hs256(header, claims().to_dict(), SECRET)
    with pytest.raises(InvalidToken) as caught:
        ring().verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "alg_not_allowed"


def test_T1_es256_not_allowed_when_no_es256_keys_are_configured(k1: dict[str, str]) -> None:
    token = ring(k1).sign(claims())
    with pytest.raises(InvalidToken) as caught:
        ring().verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "alg_not_allowed"
    assert ring().algorithms == {"HS256"}
    assert ring(k1).algorithms == {"HS256", "ES256"}


def test_T1_key_fetching_headers_rejected(k1: dict[str, str]) -> None:
    for extra in ({"jku": "https://evil.example/jwks"}, {"jwk": k1}, {"x5u": "https://x"}):
        token = forge_hs256({"alg": "HS256", "typ": "at+jwt", **extra}, claims().to_dict(), SECRET)
        with pytest.raises(InvalidToken) as caught:
            ring(k1).verify(token, expected_type=TOKEN_TYPE_ACCESS)
        assert reason(caught) == "unexpected_header"
    critical = forge_hs256(
        {"alg": "HS256", "typ": "at+jwt", "crit": ["exp"]}, claims().to_dict(), SECRET
    )
    with pytest.raises(InvalidToken):
        ring(k1).verify(critical, expected_type=TOKEN_TYPE_ACCESS)


# -- T2 ---------------------------------------------------------------------------------


def test_T2_hs256_signed_with_our_public_key_rejected(k1: dict[str, str]) -> None:
    keys = ring(k1)
    public_jwk = keys.public_jwks()["keys"][0]
    private = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(k1))
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets_an_attacker_knows = [
        pem,
        pem.strip(),
        json.dumps(public_jwk).encode(),
        json.dumps(keys.public_jwks()).encode(),
    ]
    payload = claims().to_dict()
    for secret in secrets_an_attacker_knows:
        for header in (
            {"alg": "HS256", "typ": "at+jwt"},
            {"alg": "HS256", "typ": "at+jwt", "kid": "k1"},
        ):
            with pytest.raises(InvalidToken) as caught:
                keys.verify(forge_hs256(header, payload, secret), expected_type=TOKEN_TYPE_ACCESS)
            assert reason(caught) in {"bad_signature", "kid_alg_mismatch"}


# -- T3 ---------------------------------------------------------------------------------


def test_T3_known_kid_with_another_alg_rejected(k1: dict[str, str]) -> None:
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    token = forge_hs256(header, claims().to_dict(), SECRET)  # a valid HMAC with our secret
    with pytest.raises(InvalidToken) as caught:
        ring(k1).verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "kid_alg_mismatch"


def test_T3_es256_token_without_kid_rejected(k1: dict[str, str]) -> None:
    private = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(k1))
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    token = jwt.encode(claims().to_dict(), private, "ES256", headers={"typ": "at+jwt"})
    with pytest.raises(InvalidToken) as caught:
        ring(k1).verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "missing_kid"


def test_T3_unknown_kid_causes_at_most_one_bounded_refresh(
    k1: dict[str, str], k2: dict[str, str]
) -> None:
    clock = Clock()
    reads: list[int] = []

    def key_source() -> list[dict[str, str]]:
        reads.append(1)
        return [k1]

    keys = ring(k1, clock=clock, key_source=key_source, refresh_interval=60)
    foreign = ring(k2, clock=clock).sign(claims(ttl=7200))  # kid k2: not ours

    clock.now += 61
    for _ in range(50):
        with pytest.raises(InvalidToken) as caught:
            keys.verify(foreign, expected_type=TOKEN_TYPE_ACCESS)
        assert reason(caught) == "unknown_kid"
    assert len(reads) == 1 == keys.refresh_count

    clock.now += 61
    with pytest.raises(InvalidToken):
        keys.verify(foreign, expected_type=TOKEN_TYPE_ACCESS)
    assert len(reads) == 2


def test_T3_hs256_token_with_unknown_kid_rejected_without_refresh(k1: dict[str, str]) -> None:
    reads: list[int] = []
    clock = Clock()

    def key_source() -> list[dict[str, str]]:
        reads.append(1)
        return [k1]

    keys = ring(k1, clock=clock, key_source=key_source)
    clock.now += 3600
    token = forge_hs256(
        {"alg": "HS256", "typ": "at+jwt", "kid": "../../etc/passwd"},
        claims(now=clock.now).to_dict(),
        SECRET,
    )
    with pytest.raises(InvalidToken) as caught:
        keys.verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "unknown_kid"
    assert reads == []


def test_T3_T8_refresh_picks_up_a_key_added_to_JWT_SIGNING_KEYS(
    tmp_path: Path, k1: dict[str, str], k2: dict[str, str]
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [k1]}))
    settings = load_settings({"JWT_SECRET": SECRET.decode(), "JWT_SIGNING_KEYS": str(path)})
    clock = Clock()
    running = KeyRing.from_settings(settings, clock=clock, refresh_interval=30)

    # Another instance already runs with k2 first (rotation rolled out there).
    path.write_text(json.dumps({"keys": [k2, k1]}))
    other = KeyRing.from_settings(settings, clock=clock)
    token = other.sign(claims(now=clock.now + 40))

    clock.now += 40
    assert running.verify(token, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"
    assert running.refresh_count == 1
    assert running.signing_kid == "k1"  # signing key changes only at restart
    assert {key["kid"] for key in running.public_jwks()["keys"]} == {"k1", "k2"}


# -- T4 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong", ["softcodes.a", "softcodes", "oftcodes.ai", "softcodes.ai.evil", "SOFTCODES.AI"]
)
def test_T4_wrong_issuer_also_prefix_or_substring_rejected(wrong: str) -> None:
    token = ring(issuer=wrong).sign(claims(issuer=wrong))
    with pytest.raises(InvalidToken) as caught:
        ring().verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "wrong_issuer"


@pytest.mark.parametrize("wrong", ["vscode-extensio", "vscode-extension-2", "dashboard"])
def test_T4_other_audience_rejected(wrong: str) -> None:
    token = ring(audience=wrong).sign(claims(audience=wrong))
    with pytest.raises(InvalidToken) as caught:
        ring().verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "wrong_audience"


def test_T4_missing_or_list_audience_rejected() -> None:
    header = {"alg": "HS256", "typ": "at+jwt"}
    payload = claims().to_dict()
    del payload["aud"]
    with pytest.raises(InvalidToken) as caught:
        ring().verify(forge_hs256(header, payload, SECRET), expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "missing_aud"
    payload["aud"] = [AUDIENCE, "other"]
    with pytest.raises(InvalidToken) as caught:
        ring().verify(forge_hs256(header, payload, SECRET), expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "wrong_audience"


# -- T5 ---------------------------------------------------------------------------------


def test_T5_token_kinds_never_cross(k1: dict[str, str]) -> None:
    for keys in (ring(), ring(k1)):
        access = keys.sign(claims(TOKEN_TYPE_ACCESS))
        long_lived = keys.sign(claims(TOKEN_TYPE_EXTENSION))
        with pytest.raises(InvalidToken) as caught:
            keys.verify(long_lived, expected_type=TOKEN_TYPE_ACCESS)
        assert reason(caught) == "wrong_type"
        with pytest.raises(InvalidToken) as caught:
            keys.verify(access, expected_type=TOKEN_TYPE_EXTENSION)
        assert reason(caught) == "wrong_type"


def test_T5_header_typ_must_match_the_type_claim() -> None:
    payload = claims(TOKEN_TYPE_EXTENSION).to_dict()
    relabelled = forge_hs256({"alg": "HS256", "typ": "at+jwt"}, payload, SECRET)
    with pytest.raises(InvalidToken) as caught:
        ring().verify(relabelled, expected_type=BOTH)
    assert reason(caught) == "wrong_typ"
    untyped = forge_hs256({"alg": "HS256"}, payload, SECRET)
    with pytest.raises(InvalidToken) as caught:
        ring().verify(untyped, expected_type=BOTH)
    assert reason(caught) == "wrong_typ"


def test_T5_a_refresh_token_is_never_a_bearer_token() -> None:
    """Refresh tokens are opaque random strings, and no JWT of ours has type 'refresh'."""
    opaque = generate_hs256_secret()
    with pytest.raises(InvalidToken) as caught:
        ring().verify(opaque, expected_type=BOTH)
    assert reason(caught) == "malformed"
    payload = {**claims().to_dict(), "type": "refresh"}
    forged = forge_hs256({"alg": "HS256", "typ": "JWT"}, payload, SECRET)
    with pytest.raises(InvalidToken) as caught:
        ring().verify(forged, expected_type=BOTH)
    assert reason(caught) == "bad_claims"
    with pytest.raises(ValueError, match="expected_type"):
        ring().verify(opaque, expected_type="refresh")


# -- T6 ---------------------------------------------------------------------------------


def test_T6_expired_also_at_exactly_exp(k1: dict[str, str]) -> None:
    clock = Clock()
    keys = ring(k1, clock=clock)
    token = keys.sign(claims(ttl=600))
    clock.now = NOW + 599
    keys.verify(token, expected_type=TOKEN_TYPE_ACCESS)
    clock.now = NOW + 600
    with pytest.raises(InvalidToken) as caught:
        keys.verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "expired"
    clock.now = NOW + 599.5
    keys.verify(token, expected_type=TOKEN_TYPE_ACCESS)


def test_T6_iat_in_the_future_beyond_60s_rejected() -> None:
    clock = Clock()
    keys = ring(clock=clock)
    keys.verify(keys.sign(claims(now=NOW + 60)), expected_type=TOKEN_TYPE_ACCESS)
    with pytest.raises(InvalidToken) as caught:
        keys.verify(keys.sign(claims(now=NOW + 61)), expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "issued_in_future"


# -- T8 ---------------------------------------------------------------------------------


def test_T8_key_rotation_publish_then_sign_then_retire(
    k1: dict[str, str], k2: dict[str, str]
) -> None:
    clock = Clock()
    before = ring(k1, clock=clock)
    old_token = before.sign(claims(ttl=3600))

    # Step 1: k2 is published (listed second) before it signs.
    publishing = ring(k1, k2, clock=clock)
    assert publishing.signing_kid == "k1"
    assert [key["kid"] for key in publishing.public_jwks()["keys"]] == ["k1", "k2"]

    # Step 2: k2 signs; tokens from k1 verify until they expire.
    after = ring(k2, k1, clock=clock)
    new_token = after.sign(claims(ttl=3600))
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert after.verify(old_token, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"
    assert publishing.verify(new_token, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"
    clock.now += 3600
    with pytest.raises(InvalidToken):
        after.verify(old_token, expected_type=TOKEN_TYPE_ACCESS)

    # Step 3: k1 retired.
    retired = ring(k2, clock=clock)
    with pytest.raises(InvalidToken) as caught:
        retired.verify(old_token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "unknown_kid"


def test_T8_jwks_never_contains_private_or_hmac_material(
    k1: dict[str, str], k2: dict[str, str]
) -> None:
    assert ring().public_jwks() == {"keys": []}
    jwks = ring(k1, k2).public_jwks()
    text = json.dumps(jwks)
    assert SECRET.decode() not in text
    for private in (k1, k2):
        assert private["d"] not in text
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert key["kty"] == "EC"


def test_T8_published_jwks_verifies_our_es256_tokens(k1: dict[str, str]) -> None:
    """What another service does with our JWKS: it is enough to verify a token."""
    keys = ring(k1, clock=Clock(NOW))
    token = keys.sign(claims())
    public = jwt.PyJWKSet.from_dict(keys.public_jwks())["k1"]
    payload = jwt.decode(
        token,
        public,
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False},
    )
    assert payload["sub"] == "user_1"


# -- T10 at signing time -----------------------------------------------------------------


def test_T10_schema_enforced_before_signing() -> None:
    good = claims(org=True).to_dict()
    for key in ("clerk_org_id", "organization_id", "seat_id"):
        bad = TokenClaims(**{**good, key: None})
        with pytest.raises(ValueError, match=key):
            ring().sign(bad)
    personal_with_org = TokenClaims(**{**claims().to_dict(), "organization_id": "x"})
    with pytest.raises(ValueError, match="personal token must not carry"):
        ring().sign(personal_with_org)
    with pytest.raises(ValueError, match="issuer or audience"):
        ring().sign(claims(issuer="someone-else"))


def test_T10_verify_refuses_a_signed_payload_outside_the_schema() -> None:
    payload = {**claims(org=True).to_dict(), "seat_id": None}
    token = forge_hs256({"alg": "HS256", "typ": "at+jwt"}, payload, SECRET)
    with pytest.raises(InvalidToken) as caught:
        ring().verify(token, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "bad_claims"


# -- hygiene ----------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 9000, "eyJhbGciOiJIUzI1NiJ9..."])
def test_garbage_is_invalid_token_not_a_crash(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        ring().verify(garbage, expected_type=TOKEN_TYPE_ACCESS)


def test_tampered_payload_rejected(k1: dict[str, str]) -> None:
    for keys in (ring(), ring(k1)):
        header, _, signature = keys.sign(claims()).split(".")
        evil = b64(json.dumps({**claims(org=True).to_dict()}).encode())
        with pytest.raises(InvalidToken) as caught:
            keys.verify(f"{header}.{evil}.{signature}", expected_type=TOKEN_TYPE_ACCESS)
        assert reason(caught) == "bad_signature"


def test_key_generators() -> None:
    jwk = generate_es256_jwk("2026-01")
    assert (jwk["kid"], jwk["alg"], jwk["crv"]) == ("2026-01", "ES256", "P-256")
    assert "d" in jwk
    assert generate_es256_jwk("a")["d"] != generate_es256_jwk("a")["d"]
    assert len(generate_hs256_secret().encode()) >= 32
    assert generate_hs256_secret() != generate_hs256_secret()
