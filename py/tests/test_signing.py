"""Signing and verifying our tokens (SECURITY.md T1-T6, T8, T10)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import string
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from issuer import signing
from issuer.claims import (
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_EXTENSION,
    OrgAttribution,
    TokenClaims,
    build_claims,
    validate_claims,
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
    """A ring in the migration window by default (both algorithms, ``JWT_ACCEPT_HS256=true``):
    where algorithm confusion is possible, so the T tests attack it there."""
    kwargs.setdefault("accept_hs256", True)
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
    """With ``accept_hs256`` (the migration window), HS256 tokens stay valid after moving to ES256."""
    old = ring().sign(claims())
    assert ring(k1).verify(old, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"


def test_L12_an_es256_ring_refuses_hs256_unless_told_to_accept_it(k1: dict[str, str]) -> None:
    """By default, once ES256 signs, JWT_SECRET mints nothing that verifies (L12)."""
    forged = ring().sign(claims())
    strict = KeyRing(
        hmac_secret=SECRET, issuer=ISSUER, audience=AUDIENCE, es256_jwks=[k1], clock=Clock()
    )
    assert strict.algorithms == {"ES256"}
    with pytest.raises(InvalidToken) as caught:
        strict.verify(forged, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "alg_not_allowed"
    migrating = KeyRing(
        hmac_secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        es256_jwks=[k1],
        accept_hs256=True,
        clock=Clock(),
    )
    assert migrating.verify(forged, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"


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
    # The changed file is read again (issue 16 P2, at most every
    # KEY_FILE_CHECK_INTERVAL seconds): the promoted k2 signs here too now,
    # without a restart; no unknown-kid refresh was needed.
    assert running.reload_count == 1
    assert running.refresh_count == 0
    assert running.signing_kid == "k2"
    assert {key["kid"] for key in running.public_jwks()["keys"]} == {"k1", "k2"}


def test_P2_key_file_is_looked_at_once_per_interval_and_only_read_when_changed(
    tmp_path: Path, k1: dict[str, str], k2: dict[str, str]
) -> None:
    from issuer.signing import KEY_FILE_CHECK_INTERVAL

    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [k1, k2]}))
    settings = load_settings({"JWT_SECRET": SECRET.decode(), "JWT_SIGNING_KEYS": str(path)})
    clock = Clock()
    running = KeyRing.from_settings(settings, clock=clock)
    assert running.signing_kid == "k1"
    path.write_text(json.dumps({"keys": [k2, k1]}))  # issuer keys promote k2
    running.sign(claims(now=clock.now))
    assert running.signing_kid == "k1"  # not looked at yet: within the interval
    clock.now += KEY_FILE_CHECK_INTERVAL
    token = running.sign(claims(now=clock.now))
    assert running.signing_kid == "k2" and running.reload_count == 1
    assert running.verify(token, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"
    clock.now += KEY_FILE_CHECK_INTERVAL
    running.sign(claims(now=clock.now))
    assert running.reload_count == 1  # unchanged file: a stat, no read
    path.write_text("{not json")  # a half-written file keeps the current keys
    clock.now += KEY_FILE_CHECK_INTERVAL
    assert running.verify(token, expected_type=TOKEN_TYPE_ACCESS).sub == "user_1"
    assert running.signing_kid == "k2" and running.reload_count == 1


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
    """An invalid TokenClaims cannot be built, so sign() never receives one."""
    good = claims(org=True)
    for key in ("clerk_org_id", "organization_id", "seat_id"):
        with pytest.raises(ValueError, match=key):
            TokenClaims(**{**good.to_dict(), key: None})
        with pytest.raises(ValueError, match=key):
            empty: dict[str, Any] = {key: ""}
            dataclasses.replace(good, **empty)
    with pytest.raises(ValueError, match="personal token must not carry"):
        TokenClaims(**{**claims().to_dict(), "organization_id": "x"})
    with pytest.raises(TypeError, match="TokenClaims"):
        ring().sign(good.to_dict())  # type: ignore[arg-type]
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


# -- the hand-written verification against jwt.decode -----------------------------------
#
# KeyRing.verify parses the compact JWS itself (PyJWT's decode checks base64url one
# byte at a time in Python). The oracle below is KeyRing.verify as it was before, with
# jwt.decode doing the parsing, the signature and the registered claims; the new code
# must accept exactly the tokens the oracle accepts, with the same claims, and refuse
# for the same reason, except for the deliberate refusals listed in DIVERGENCES.

_ORACLE_FORBIDDEN = frozenset({"crit", "jku", "jwk", "x5u", "x5c"})


def oracle_verify(keys: KeyRing, token: str, expected: set[str], now: float) -> TokenClaims:
    """``KeyRing.verify`` with ``jwt.decode`` (the code at commit 5523439)."""
    if not isinstance(token, str) or len(token) > 8192:
        raise InvalidToken("malformed")
    parts = token.split(".")
    if len(parts) != 3 or not re.fullmatch(r"[A-Za-z0-9_-]+", parts[0]):
        raise InvalidToken("malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidToken("malformed") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in keys.algorithms:
        raise InvalidToken("alg_not_allowed")
    if _ORACLE_FORBIDDEN & header.keys():
        raise InvalidToken("unexpected_header")
    kid = header.get("kid")
    published = {k["kid"]: k for k in keys.public_jwks()["keys"]}
    key: Any
    if alg == "HS256":
        if kid is not None:
            known = isinstance(kid, str) and kid in published
            raise InvalidToken("kid_alg_mismatch" if known else "unknown_kid")
        key = SECRET
    else:
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("missing_kid")
        if kid not in published:
            raise InvalidToken("unknown_kid")
        key = jwt.PyJWK.from_dict(published[kid]).key
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=keys.audience,
            issuer=keys.issuer,
            options={
                "require": ["iss", "aud", "exp", "iat", "sub", "jti", "client_id"],
                "strict_aud": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad_signature") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("wrong_issuer") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("wrong_audience") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"missing_{exc.claim}") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("malformed") from None
    if payload.get("iss") != keys.issuer:
        raise InvalidToken("wrong_issuer")
    if payload.get("aud") != keys.audience:
        raise InvalidToken("wrong_audience")
    exp: Any = payload.get("exp")
    iat: Any = payload.get("iat")
    for value in (exp, iat):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidToken("bad_claims")
    if now >= exp:
        raise InvalidToken("expired")
    if iat > now + 60:
        raise InvalidToken("issued_in_future")
    try:
        result = validate_claims(payload)
    except (ValueError, TypeError):  # the old schema check raised TypeError on lists
        raise InvalidToken("bad_claims") from None
    if result.type not in expected:
        raise InvalidToken("wrong_type")
    typ = header.get("typ")
    want = {"access": "at+jwt", "extension_long_lived": "jwt"}[result.type]
    if not isinstance(typ, str) or typ.lower() != want:
        raise InvalidToken("wrong_typ")
    return result


Outcome = tuple[str, Any]


def outcome(verify: Any) -> Outcome:
    try:
        return ("accepted", verify())
    except InvalidToken as exc:
        return ("refused", exc.reason)


def _segment_bytes(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, binascii.Error):
        return None


def _has_duplicate_names(raw: bytes | None) -> bool:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise KeyError("duplicate")
        return dict(pairs)

    try:
        json.loads(raw or b"", object_pairs_hook=hook)
    except KeyError:
        return True
    except (ValueError, RecursionError):
        pass
    return False


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


def _is_utf8_json_object(raw: bytes | None) -> bool:
    """UTF-8 JSON text that is one object with no whitespace around it (and no NaN)."""
    try:
        text = (raw or b"").decode("utf-8")
        value = json.loads(text, parse_constant=_not_json)
        return isinstance(value, dict) and text == text.strip(" \t\n\r")
    except (ValueError, RecursionError):
        return False


def divergence(token: str) -> str | None:
    """Why the new verify may refuse a token the oracle treats otherwise (or ``None``).

    * ``padding``: ``=`` in a segment; PyJWT accepts a padded signature.
    * ``encoding``: a segment that is not canonical base64url, or a header or
      payload that is not a UTF-8 JSON object without surrounding whitespace
      (PyJWT also reads UTF-16/32 and whitespace) or that holds ``NaN`` or
      ``Infinity`` (not JSON; PyJWT's ``json.loads`` reads them).
    * ``duplicate``: a member name twice in header or payload (PyJWT: last wins).
    * ``b64``: a ``b64`` header (RFC 7797), which we never write.
    * ``hs256_null_kid``: ``"kid": null`` on HS256 (PyJWT refuses it as malformed,
      we as unknown_kid: an HS256 token carries no kid at all).
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    if any("=" in part for part in parts):
        return "padding"
    for part in parts:
        if not re.fullmatch(r"[A-Za-z0-9_-]*", part) or len(part) % 4 == 1:
            return None
        raw = _segment_bytes(part)
        if raw is not None and b64(raw) != part:
            return "encoding"
    header_raw, payload_raw = _segment_bytes(parts[0]), _segment_bytes(parts[1])
    if _has_duplicate_names(header_raw) or _has_duplicate_names(payload_raw):
        return "duplicate"
    if not _is_utf8_json_object(header_raw):
        return "encoding"
    header = json.loads((header_raw or b"").decode())
    if "b64" in header:
        return "b64"
    if header.get("alg") == "HS256" and "kid" in header and header["kid"] is None:
        return "hs256_null_kid"
    if not _is_utf8_json_object(payload_raw):
        return "encoding"
    return None


def pyjwt_parses(token: str) -> bool:
    try:
        jwt.get_unverified_header(token)  # decodes all three segments
    except jwt.DecodeError:
        return False
    except jwt.InvalidTokenError:  # kid or crit headers: parsed, then refused
        return True
    return True


def assert_agrees(keys: KeyRing, token: str, expected: set[str] = BOTH) -> Outcome:
    new = outcome(lambda: keys.verify(token, expected_type=expected))
    try:
        old = outcome(lambda: oracle_verify(keys, token, expected, keys._clock()))
    except UnicodeEncodeError:
        # jwt.decode encodes the token to UTF-8 first: a lone surrogate in the
        # payload or signature segment crashed the old verify (a 500, not a 401).
        assert any("\ud800" <= char <= "\udfff" for char in token)
        assert new == ("refused", "malformed")
        return new
    if new == old:
        return new
    if new == ("refused", "malformed") and old[0] == "refused" and not pyjwt_parses(token):
        # Both refuse a token PyJWT cannot parse either; one regex over the whole
        # token finds that before the header checks the old code ran first.
        return new
    why = divergence(token)
    assert why is not None, f"verify {new} but jwt.decode {old} for {token!r}"
    assert new[0] == "refused", f"accepted what jwt.decode refused ({why}): {token!r}"
    return new


def es256_private(jwk: dict[str, str]) -> ec.EllipticCurvePrivateKey:
    private = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(jwk))
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private


def sign_raw(header: bytes, payload: bytes, alg: str, jwk: dict[str, str] | None = None) -> str:
    """Sign arbitrary header and payload bytes (HS256 with SECRET, ES256 with ``jwk``)."""
    signing_input = f"{b64(header)}.{b64(payload)}".encode()
    if alg == "ES256":
        assert jwk is not None
        algo = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)
        signature = algo.sign(signing_input, es256_private(jwk))
    else:
        signature = hmac.new(SECRET, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64(signature)}"


def test_sign_writes_what_jwt_encode_writes(k1: dict[str, str]) -> None:
    """The hand-built compact JWS is byte for byte PyJWT's (HS256 is deterministic)."""
    for token_type, typ in ((TOKEN_TYPE_ACCESS, "at+jwt"), (TOKEN_TYPE_EXTENSION, "JWT")):
        for org in (False, True):
            minted = claims(token_type, org=org)
            ours = ring().sign(minted)
            assert ours == jwt.encode(minted.to_dict(), SECRET, "HS256", headers={"typ": typ})
            es = ring(k1).sign(minted)
            reference = jwt.encode(
                minted.to_dict(), es256_private(k1), "ES256", headers={"typ": typ, "kid": "k1"}
            )
            assert es.split(".")[:2] == reference.split(".")[:2]
            public = jwt.PyJWKSet.from_dict(ring(k1).public_jwks())["k1"]
            decoded = jwt.decode(
                es, public, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER,
                options={"verify_exp": False},
            )  # fmt: skip
            assert decoded == minted.to_dict()


def test_verify_refuses_tokens_from_a_token_of_ours_mutated_by_hand(k1: dict[str, str]) -> None:
    for keys in (ring(), ring(k1)):
        token = keys.sign(claims(org=True))
        h, p, s = token.split(".")
        mutated = [
            f" {token}", f"{token} ", f"{token}\n", f"\t{token}", f"{h}. {p}.{s}",
            f"{h}.{p}.{s}.", f"{h}.{p}.{s}.{s}", f"{h}.{p}", f"{h}..{s}", f".{p}.{s}",
            f"{h}.{p}.{s}=", f"{h}.{p}.{s}==", f"{h}=.{p}.{s}", f"{h}.{p}=.{s}",
            f"{h}.{p}.{s[:-1]}", f"{h}.{p[:-1]}.{s}", f"{h[:-1]}.{p}.{s}",
            f"{h}.{p}.{s}A", f"{h}.{p}.{s}AA", f"{h}.{p}.{s}AAAA",
            token.replace("-", "+"), token.replace("_", "/"),
            f"{h}.{p}.{s[:-1]}é", f"{h}.{p}.{s[:-1]}\uff21", f"{h}.{p}.{s[:-1]}\x00",
            f"{h}.{p}.{s}\u200b", token.upper(), token.lower(), token.encode().hex(),
        ]  # fmt: skip
        for bad in mutated:
            if bad == token:  # e.g. no "_" to replace in this token
                continue
            new = assert_agrees(keys, bad)
            assert new[0] == "refused", bad
        assert assert_agrees(keys, token)[0] == "accepted"


def test_verify_refuses_non_canonical_and_padded_segments() -> None:
    """Same bytes, second spelling: refused, also where PyJWT lets it pass."""
    keys = ring()
    token = keys.sign(claims())
    h, p, s = token.split(".")
    assert len(s) % 4 == 3  # 32-byte HMAC: 43 characters, last one carries 2 zero bits
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    index = alphabet.index(s[-1])
    for other in alphabet[index + 1 : index + 4]:  # the same 4 data bits, other filler bits
        assert _segment_bytes(s[:-1] + other) == _segment_bytes(s)
        with pytest.raises(InvalidToken) as caught:
            keys.verify(f"{h}.{p}.{s[:-1]}{other}", expected_type=TOKEN_TYPE_ACCESS)
        assert reason(caught) == "malformed"
    padded = f"{h}.{p}.{s}="
    assert jwt.decode(
        padded, SECRET, algorithms=["HS256"], options={"verify_aud": False, "verify_exp": False}
    )
    with pytest.raises(InvalidToken) as caught:
        keys.verify(padded, expected_type=TOKEN_TYPE_ACCESS)
    assert reason(caught) == "malformed"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"[]", "malformed"),
        (b"null", "malformed"),
        (b'"a string"', "malformed"),
        (b"1750000000", "malformed"),
        (b"{", "malformed"),
        (b"[" * 3000 + b"]" * 3000, "malformed"),
        (b"\xff\xfe{}", "malformed"),
        ('{"sub": "\u00e9"}'.encode("utf-16"), "malformed"),
    ],
)
def test_verify_refuses_a_signed_payload_that_is_no_json_object(payload: bytes, why: str) -> None:
    token = sign_raw(b'{"alg":"HS256","typ":"at+jwt"}', payload, "HS256")
    with pytest.raises(InvalidToken) as caught:
        ring().verify(token, expected_type=BOTH)
    assert reason(caught) == why


def test_verify_refuses_a_header_that_is_no_json_object() -> None:
    payload = json.dumps(claims().to_dict()).encode()
    for header in (b"[]", b'"HS256"', b"[" * 3000 + b"]" * 3000, b"", b"{"):
        with pytest.raises(InvalidToken) as caught:
            ring().verify(sign_raw(header, payload, "HS256"), expected_type=BOTH)
        assert reason(caught) == "malformed", header


def test_verify_refuses_duplicate_member_names() -> None:
    """Two parsers must never read different claims: no "last one wins"."""
    good = claims().to_dict()
    body = json.dumps(good)[:-1]
    for duplicate in (', "aud": "other"', ', "type": "access"', ', "exp": 9999999999'):
        token = sign_raw(
            b'{"alg":"HS256","typ":"at+jwt"}', (body + duplicate + "}").encode(), "HS256"
        )
        with pytest.raises(InvalidToken) as caught:
            ring().verify(token, expected_type=BOTH)
        assert reason(caught) == "malformed"
    header = b'{"alg":"none","alg":"HS256","typ":"at+jwt"}'
    with pytest.raises(InvalidToken) as caught:
        ring().verify(sign_raw(header, json.dumps(good).encode(), "HS256"), expected_type=BOTH)
    assert reason(caught) == "malformed"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"aud": [AUDIENCE]}, "wrong_audience"),
        ({"aud": ""}, "missing_aud"),
        ({"aud": None}, "missing_aud"),
        ({"iss": [ISSUER]}, "wrong_issuer"),
        ({"iss": 1}, "wrong_issuer"),
        ({"exp": True}, "bad_claims"),
        ({"iat": False}, "bad_claims"),
        ({"exp": 1_750_003_600.0}, "bad_claims"),
        # NaN and Infinity are not JSON (RFC 8259): refused when parsed, like JSON.parse does.
        ({"exp": float("nan")}, "malformed"),
        ({"exp": float("inf")}, "malformed"),
        ({"exp": "1750003600"}, "bad_claims"),
        ({"exp": 10**5000}, "malformed"),  # past Python's int-parsing limit
        ({"sub": 1}, "malformed"),
        ({"jti": ["x"]}, "malformed"),
        ({"sub": ""}, "bad_claims"),
        ({"type": ["access"]}, "bad_claims"),
        ({"pool": {"organization": True}}, "bad_claims"),
        ({"email": {"a": 1}}, "bad_claims"),
        ({"seat_id": 7}, "bad_claims"),
        ({"extra": 1}, "bad_claims"),
    ],
)
def test_verify_refuses_odd_claim_values(change: dict[str, Any], why: str) -> None:
    if change.get("exp") == 10**5000:
        sys.set_int_max_str_digits(0)  # only to write the token
        try:
            payload = json.dumps({**claims().to_dict(), **change})
        finally:
            sys.set_int_max_str_digits(4300)
        token = sign_raw(b'{"alg":"HS256","typ":"at+jwt"}', payload.encode(), "HS256")
    else:
        token = forge_hs256(
            {"alg": "HS256", "typ": "at+jwt"}, {**claims().to_dict(), **change}, SECRET
        )
    with pytest.raises(InvalidToken) as caught:
        ring().verify(token, expected_type=BOTH)
    assert reason(caught) == why
    assert_agrees(ring(), token)


def test_verify_refuses_the_b64_header_and_a_null_kid_on_hs256() -> None:
    payload = claims().to_dict()
    for extra, why in (({"b64": True}, "unexpected_header"), ({"b64": False}, "unexpected_header"),
                       ({"kid": None}, "unknown_kid")):  # fmt: skip
        token = forge_hs256({"alg": "HS256", "typ": "at+jwt", **extra}, payload, SECRET)
        with pytest.raises(InvalidToken) as caught:
            ring().verify(token, expected_type=BOTH)
        assert reason(caught) == why


# -- property tests: random mutations and random signed content ---------------------------

_MUTATION_CHARS = string.ascii_letters + string.digits + "-_=.+/ \t\n\r\x00é\uff21\u200b\ud800"
_PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_PROPERTY_SETTINGS
@given(data=st.data())
def test_property_mutated_tokens_agree_with_jwt_decode(
    data: st.DataObject, k1: dict[str, str]
) -> None:
    keys = data.draw(st.sampled_from([ring(), ring(k1)]), label="ring")
    token = keys.sign(
        claims(data.draw(st.sampled_from(sorted(BOTH))), org=data.draw(st.booleans()))
    )
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        at = data.draw(st.integers(0, len(token)), label="at")
        char = data.draw(st.sampled_from(_MUTATION_CHARS), label="char")
        edit = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="edit")
        if edit == "insert":
            token = token[:at] + char + token[at:]
        elif edit == "delete":
            token = token[:at] + token[at + 1 :]
        else:
            token = token[:at] + char + token[at + 1 :]
    assert_agrees(keys, token)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_CLAIM_NAMES = st.sampled_from([*claims().to_dict(), "nbf", "admin", "scope"])


@st.composite
def signed_tokens(draw: st.DrawFn, k1: dict[str, str], k2: dict[str, str]) -> str:
    """Tokens signed with our keys (or k2, unknown to the ring) over content that is
    mostly ours, with a few headers and claims changed to odd JSON values."""
    token_type = draw(st.sampled_from(sorted(BOTH)))
    alg = draw(st.sampled_from(["HS256"] * 6 + ["ES256"] * 6 + ["none", "HS384", None, 5]))
    header: dict[str, Any] = {"alg": alg, "typ": {"access": "at+jwt"}.get(token_type, "JWT")}
    if alg == "ES256":
        header["kid"] = "k1"
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        name = draw(st.sampled_from(["typ", "kid", "alg", "jku", "x5u", "crit", "b64", "cty"]))
        if draw(st.booleans()):
            header.pop(name, None)
        else:
            header[name] = draw(
                st.sampled_from(["at+jwt", "JWT", "AT+JWT", "k1", "k2", "", "HS256", "ES256"])
                | _JSON_VALUES
            )
    now = NOW + draw(st.sampled_from([0] * 6 + [30, 61, -3600, -3599, 3600, -(10**9)]))
    payload = claims(token_type, org=draw(st.booleans()), now=now).to_dict()
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        name = draw(_CLAIM_NAMES)
        if draw(st.integers(0, 3)) == 0:
            payload.pop(name, None)
        else:
            payload[name] = draw(
                _JSON_VALUES | st.sampled_from([ISSUER, AUDIENCE, "org_x", "access", "personal"])
            )
    signer = draw(st.sampled_from([k1, k1, k2])) if alg == "ES256" else None
    return sign_raw(
        json.dumps(header).encode(),
        json.dumps(payload).encode(),
        "ES256" if signer else "HS256",
        signer,
    )


@_PROPERTY_SETTINGS
@given(data=st.data())
def test_property_signed_tokens_agree_with_jwt_decode(
    data: st.DataObject, k1: dict[str, str], k2: dict[str, str]
) -> None:
    keys = data.draw(st.sampled_from([ring(), ring(k1), ring(k1)]), label="ring")
    token = data.draw(signed_tokens(k1, k2), label="token")
    expected = data.draw(st.sampled_from([BOTH, {TOKEN_TYPE_ACCESS}, {TOKEN_TYPE_EXTENSION}]))
    assert_agrees(keys, token, expected)


@_PROPERTY_SETTINGS
@given(raw=st.binary(max_size=40), extra=st.text(alphabet=string.ascii_letters + "-_", max_size=3))
def test_property_only_canonical_base64url_is_decoded(raw: bytes, extra: str) -> None:
    """The hand-written canonicality rule equals "re-encoding gives the same text"."""
    canonical = b64(raw)
    assert signing._b64url_decode(canonical) == raw
    segment = canonical + extra
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:
        decoded = None
    ours = outcome(lambda: signing._b64url_decode(segment))
    if decoded is not None and b64(decoded) == segment:
        assert ours == ("accepted", decoded)
    else:
        assert ours == ("refused", "malformed")


def test_concurrent_verification_during_key_refreshes(
    k1: dict[str, str], k2: dict[str, str]
) -> None:
    """One ring, many threads, refreshes in between: every answer is right."""
    clock = Clock()
    keys = ring(k1, clock=clock, key_source=lambda: [k1, k2], refresh_interval=0)
    good = [keys.sign(claims(org=org)) for org in (False, True)]
    good.append(ring().sign(claims()))  # HS256, verified by the same ring
    foreign = ring(k2, clock=clock).sign(claims())
    errors: list[str] = []

    def work() -> None:
        for i in range(300):
            try:
                keys.verify(good[i % len(good)], expected_type=TOKEN_TYPE_ACCESS)
                keys.verify(foreign, expected_type=TOKEN_TYPE_ACCESS)  # k2: found by a refresh
            except InvalidToken as exc:
                errors.append(exc.reason)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert keys.refresh_count >= 1


def test_verify_refuses_json_with_whitespace_around_or_text_after_it() -> None:
    """We write compact JSON; anything else in a signed segment is not ours."""
    body = json.dumps(claims().to_dict()).encode()
    header = b'{"alg":"HS256","typ":"at+jwt"}'
    assert ring().verify(sign_raw(header, body, "HS256"), expected_type=BOTH)
    for payload in (b" " + body, body + b"\n", body + b"{}", body + b" 1"):
        with pytest.raises(InvalidToken) as caught:
            ring().verify(sign_raw(header, payload, "HS256"), expected_type=BOTH)
        assert reason(caught) == "malformed"
    with pytest.raises(InvalidToken) as caught:
        ring().verify(sign_raw(b" " + header, body, "HS256"), expected_type=BOTH)
    assert reason(caught) == "malformed"
