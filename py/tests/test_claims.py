"""The claim schema (ARCHITECTURE.md, Issuer contract; SECURITY.md T10)."""

from __future__ import annotations

import dataclasses
import uuid
from types import MappingProxyType
from typing import Any

import pytest

from issuer.claims import (
    CLAIM_KEYS,
    ORG_KEYS,
    SESSION_CLIENT_ID,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_EXTENSION,
    OrgAttribution,
    TokenClaims,
    build_claims,
    new_jti,
    validate_claims,
)

NOW = 1_750_000_000

RPC_ROW: dict[str, Any] = {
    "pool": "organization",
    "clerk_org_id": "org_acme",
    "organization_id": "7d0e3c1a-3f5e-4d5e-9a43-2b1f3c4d5e6f",
    "organization_name": "Acme",
    "stripe_customer_id": "cus_123",
    "organization_subscription_id": None,
    "seat_id": "0b8f1c2d-1111-4222-8333-944455566677",
    "seat_role": "member",
}


def personal(**overrides: Any) -> dict[str, Any]:
    payload = build_claims(
        "user_1",
        "a@example.com",
        TOKEN_TYPE_ACCESS,
        None,
        issuer="softcodes.ai",
        audience="vscode-extension",
        ttl_seconds=3600,
        now=NOW,
    ).to_dict()
    payload.update(overrides)
    return payload


def org(**overrides: Any) -> dict[str, Any]:
    attribution = OrgAttribution.from_rpc(RPC_ROW, org_role="org:member")
    payload = build_claims(
        "user_1",
        None,
        TOKEN_TYPE_EXTENSION,
        attribution,
        issuer="softcodes.ai",
        audience="vscode-extension",
        ttl_seconds=3600,
        now=NOW,
    ).to_dict()
    payload.update(overrides)
    return payload


def test_personal_token_has_every_key_and_null_org_keys() -> None:
    claims = personal()
    assert list(claims) == list(CLAIM_KEYS)
    assert claims["pool"] == "personal"
    assert all(claims[key] is None for key in ORG_KEYS)
    assert (claims["iat"], claims["exp"]) == (NOW, NOW + 3600)
    assert claims["type"] == "access"


def test_org_token_copies_attribution_and_org_role() -> None:
    claims = org()
    assert list(claims) == list(CLAIM_KEYS)
    assert claims["pool"] == "organization"
    for key in RPC_ROW:
        assert claims[key] == RPC_ROW[key]
    assert claims["org_role"] == "org:member"
    assert claims["type"] == "extension_long_lived"


def test_every_token_gets_its_own_jti() -> None:
    assert personal()["jti"] != personal()["jti"]
    uuid.UUID(personal()["jti"])


def test_new_jti_is_a_random_uuid4_in_canonical_form() -> None:
    seen = set()
    for _ in range(2000):
        jti = new_jti()
        parsed = uuid.UUID(jti)
        assert str(parsed) == jti  # lower-case hex, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(jti)
    assert len(seen) == 2000
    # Every one of the 122 random bits varies (none stuck at 0 or 1).
    values = [uuid.UUID(new_jti()).int for _ in range(400)]
    fixed = (1 << 128) - 1 - (0xF << 76) - (0x3 << 62)  # all but version and variant bits
    assert all(any(v >> bit & 1 for v in values) for bit in range(128) if fixed >> bit & 1)
    assert all(not all(v >> bit & 1 for v in values) for bit in range(128) if fixed >> bit & 1)


@pytest.mark.parametrize("key", ["clerk_org_id", "organization_id", "seat_id"])
def test_T10_org_token_needs_clerk_org_id_organization_id_seat_id(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        validate_claims(org(**{key: None}))
    with pytest.raises(ValueError, match=key):
        validate_claims(org(**{key: ""}))


@pytest.mark.parametrize("key", ORG_KEYS)
def test_T10_personal_token_carries_org_keys_as_null(key: str) -> None:
    assert validate_claims(personal()).pool == "personal"
    with pytest.raises(ValueError, match="personal token must not carry"):
        validate_claims(personal(**{key: "something"}))


def test_T10_every_key_must_be_present_and_no_other() -> None:
    for key in CLAIM_KEYS:
        payload = personal()
        del payload[key]
        with pytest.raises(ValueError, match="lack keys"):
            validate_claims(payload)
    with pytest.raises(ValueError, match="unknown keys"):
        validate_claims(personal(admin=True))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"type": "refresh"}, "token type"),
        ({"type": None}, "token type"),
        ({"pool": "team"}, "pool"),
        ({"iat": True}, "iat"),
        ({"exp": "1750003600"}, "exp"),
        ({"exp": NOW}, "after iat"),
        ({"sub": ""}, "sub"),
        ({"jti": None}, "jti"),
        ({"aud": ["vscode-extension"]}, "aud"),
        ({"client_id": ""}, "client_id"),
        ({"client_id": None}, "client_id"),
        ({"email": 42}, "email"),
    ],
)
def test_T10_wrong_values_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_claims(personal(**overrides))


def test_org_attribution_from_rpc_needs_every_contract_key() -> None:
    for key in RPC_ROW:
        row = {k: v for k, v in RPC_ROW.items() if k != key}
        with pytest.raises(ValueError, match=key):
            OrgAttribution.from_rpc(row)
    with pytest.raises(ValueError, match="pool"):
        OrgAttribution.from_rpc({**RPC_ROW, "pool": "personal"})
    with pytest.raises(ValueError, match="seat_id"):
        OrgAttribution.from_rpc({**RPC_ROW, "seat_id": None})


def test_org_attribution_accepts_uuid_objects_from_a_driver() -> None:
    seat = uuid.uuid4()
    attribution = OrgAttribution.from_rpc({**RPC_ROW, "seat_id": seat})
    assert attribution.seat_id == str(seat)


def test_R2_every_token_names_its_client_rfc9068() -> None:
    """RFC 9068 §2.2: client_id is required; tokens for a Clerk session name the dashboard."""
    assert "client_id" in CLAIM_KEYS
    assert personal()["client_id"] == SESSION_CLIENT_ID == "dashboard"
    claims = build_claims(
        "u", None, TOKEN_TYPE_ACCESS, None, issuer="i", audience="a", ttl_seconds=60,
        client_id="vscode-extension",
    )  # fmt: skip
    assert claims.to_dict()["client_id"] == "vscode-extension"
    with pytest.raises(ValueError, match="client_id"):
        build_claims(
            "u", None, TOKEN_TYPE_ACCESS, None, issuer="i", audience="a", ttl_seconds=60,
            client_id="",
        )  # fmt: skip


def test_build_claims_refuses_a_nonpositive_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        build_claims(
            "user_1", None, TOKEN_TYPE_ACCESS, None, issuer="i", audience="a", ttl_seconds=0
        )


# -- valid by construction ----------------------------------------------------------------


def test_the_fields_are_the_claim_keys_in_order() -> None:
    """validate_claims builds TokenClaims positionally in CLAIM_KEYS order."""
    assert tuple(field.name for field in dataclasses.fields(TokenClaims)) == CLAIM_KEYS


def test_to_dict_is_a_shallow_dict_of_every_field_in_claim_key_order() -> None:
    for payload in (personal(), org()):
        claims = validate_claims(payload)
        out = claims.to_dict()
        assert list(out) == list(CLAIM_KEYS)
        assert out == dataclasses.asdict(claims) == payload
        out["sub"] = "changed"  # a fresh dict each time: the claims are untouched
        assert claims.to_dict()["sub"] == "user_1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"type": ["access"]}, "token type"),  # unhashable: a ValueError, not a TypeError
        ({"type": {"access": 1}}, "token type"),
        ({"pool": ["personal"]}, "pool"),
        ({"iat": 1.5}, "iat"),
        ({"exp": None}, "exp"),
        ({"iss": b"softcodes.ai"}, "iss"),
        ({"seat_role": 1}, "seat_role"),
        ({"org_role": ["org:admin"]}, "org_role"),
    ],
)
def test_T10_unhashable_and_odd_values_are_value_errors(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        validate_claims(personal(**overrides))
    with pytest.raises(ValueError, match=message):
        TokenClaims(**personal(**overrides))


def test_T10_a_token_claims_cannot_be_built_or_changed_into_an_invalid_one() -> None:
    claims = validate_claims(org())
    with pytest.raises(ValueError, match="seat_id"):
        dataclasses.replace(claims, seat_id=None)
    with pytest.raises(ValueError, match="personal token must not carry"):
        dataclasses.replace(claims, pool="personal")
    with pytest.raises(ValueError, match="after iat"):
        dataclasses.replace(claims, exp=claims.iat)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.seat_id = None  # type: ignore[misc]
    no_org: dict[str, Any] = dict.fromkeys(ORG_KEYS)
    personal_claims = dataclasses.replace(claims, pool="personal", **no_org)
    assert personal_claims.to_dict() == personal(
        type=TOKEN_TYPE_EXTENSION, email=None, jti=claims.jti
    )


def test_validate_claims_takes_any_mapping() -> None:
    payload = MappingProxyType(org())
    assert validate_claims(payload).to_dict() == dict(payload)
    with pytest.raises(ValueError, match="lack keys: seat_id"):
        validate_claims({k: v for k, v in org().items() if k != "seat_id"})


def test_build_claims_validates_what_it_is_given() -> None:
    with pytest.raises(ValueError, match="token type"):
        build_claims("u", None, "refresh", None, issuer="i", audience="a", ttl_seconds=60)
    with pytest.raises(ValueError, match="sub"):
        build_claims("", None, TOKEN_TYPE_ACCESS, None, issuer="i", audience="a", ttl_seconds=60)
    with pytest.raises(ValueError, match="iss"):
        build_claims("u", None, TOKEN_TYPE_ACCESS, None, issuer="", audience="a", ttl_seconds=60)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seat_id": ""}, "seat_id must be a non-empty string"),
        ({"clerk_org_id": 7}, "clerk_org_id must be a non-empty string"),
        ({"organization_name": 5}, "organization_name must be a string or null"),
        ({"org_role": ["org:admin"]}, "org_role must be a string or null"),
        ({"seat_role": b"member"}, "seat_role must be a string or null"),
    ],
)
def test_org_attribution_refuses_wrong_types(change: dict[str, Any], message: str) -> None:
    attribution = OrgAttribution.from_rpc(RPC_ROW, org_role="org:member")
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(attribution, **change)
