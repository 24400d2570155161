"""The unified claim schema of every token the issuer signs (pure, no I/O).

One schema for every token type, every key always present, so consumers
(edge functions, the usage endpoint, analysts reading a decoded token) never
guess. With ``pool = 'personal'`` the eight org keys are null; with
``pool = 'organization'`` ``clerk_org_id``, ``organization_id`` and ``seat_id``
are never null (SECURITY.md T10). :func:`validate_claims` enforces this and is
called before signing and after verifying.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, cast

TOKEN_TYPE_ACCESS: Final = "access"
"""Short-lived bearer token (OAuth access token, dashboard token)."""

TOKEN_TYPE_EXTENSION: Final = "extension_long_lived"
"""Long-lived extension token; also checked against ``extension_tokens`` (T7)."""

TOKEN_TYPES: Final = frozenset({TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION})

POOL_ORGANIZATION: Final = "organization"
POOL_PERSONAL: Final = "personal"
POOLS: Final = frozenset({POOL_ORGANIZATION, POOL_PERSONAL})

TokenType = Literal["access", "extension_long_lived"]
Pool = Literal["organization", "personal"]

ORG_KEYS: Final = (
    "clerk_org_id",
    "organization_id",
    "organization_name",
    "stripe_customer_id",
    "organization_subscription_id",
    "seat_id",
    "seat_role",
    "org_role",
)
"""The eight keys that are null on a personal token."""

REQUIRED_ORG_KEYS: Final = ("clerk_org_id", "organization_id", "seat_id")
"""Never null on an organization token (T10)."""

CLAIM_KEYS: Final = (
    "sub",
    "email",
    "type",
    "iat",
    "exp",
    "jti",
    "iss",
    "aud",
    "pool",
    *ORG_KEYS,
)
"""Every claim of every token, in a stable order."""

_ATTRIBUTION_RPC_KEYS: Final = (
    "pool",
    "clerk_org_id",
    "organization_id",
    "organization_name",
    "stripe_customer_id",
    "organization_subscription_id",
    "seat_id",
    "seat_role",
)


@dataclass(frozen=True, slots=True)
class OrgAttribution:
    """Org attribution for a token: the ``resolve_org_attribution`` row plus ``org_role``.

    The database decides everything except ``org_role``, which only Clerk
    knows (``org:admin`` / ``org:member`` ...). ``pool`` is always
    ``'organization'``: a personal token has no attribution at all.
    """

    clerk_org_id: str
    organization_id: str
    organization_name: str | None
    stripe_customer_id: str | None
    organization_subscription_id: str | None
    seat_id: str
    seat_role: str | None
    org_role: str | None = None
    pool: Literal["organization"] = "organization"

    def __post_init__(self) -> None:
        if self.pool != POOL_ORGANIZATION:
            raise ValueError("OrgAttribution.pool must be 'organization'")
        for key in REQUIRED_ORG_KEYS:
            if not _is_nonempty_str(getattr(self, key)):
                raise ValueError(f"OrgAttribution.{key} must be a non-empty string")
        for key in ORG_KEYS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"OrgAttribution.{key} must be a string or null")

    @classmethod
    def from_rpc(cls, row: Mapping[str, Any], *, org_role: str | None = None) -> OrgAttribution:
        """Build from the JSON object returned by ``resolve_org_attribution``.

        The RPC's keys are the contract: a missing key is a bug on one side and
        raises ``ValueError`` rather than silently producing a partial token.
        UUIDs are accepted as ``uuid.UUID`` too (a driver may decode them).
        """
        missing = [key for key in _ATTRIBUTION_RPC_KEYS if key not in row]
        if missing:
            raise ValueError(f"resolve_org_attribution result lacks keys: {', '.join(missing)}")
        if row["pool"] != POOL_ORGANIZATION:
            raise ValueError("resolve_org_attribution result has pool != 'organization'")

        def text(key: str) -> str | None:
            value = row[key]
            return str(value) if isinstance(value, uuid.UUID) else cast("str | None", value)

        return cls(
            clerk_org_id=cast(str, text("clerk_org_id")),
            organization_id=cast(str, text("organization_id")),
            organization_name=text("organization_name"),
            stripe_customer_id=text("stripe_customer_id"),
            organization_subscription_id=text("organization_subscription_id"),
            seat_id=cast(str, text("seat_id")),
            seat_role=text("seat_role"),
            org_role=org_role,
        )


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims of one token. Construct through :func:`build_claims` or
    :func:`validate_claims`; both guarantee the T10 invariants."""

    sub: str
    email: str | None
    type: TokenType
    iat: int
    exp: int
    jti: str
    iss: str
    aud: str
    pool: Pool
    clerk_org_id: str | None
    organization_id: str | None
    organization_name: str | None
    stripe_customer_id: str | None
    organization_subscription_id: str | None
    seat_id: str | None
    seat_role: str | None
    org_role: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JWT payload: every key of :data:`CLAIM_KEYS`, nulls included."""
        return asdict(self)

    @property
    def is_org_scoped(self) -> bool:
        return self.pool == POOL_ORGANIZATION


def build_claims(
    sub: str,
    email: str | None,
    token_type: str,
    attribution: OrgAttribution | None,
    *,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    now: float | None = None,
    jti: str | None = None,
) -> TokenClaims:
    """Claims for a new token: org-scoped when ``attribution`` is given, else personal.

    ``now`` and ``jti`` exist for tests; by default the clock and a random
    UUID are used (``jti`` is on every token so a token can be named in logs and
    revocation lists).
    """
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be a positive integer")
    iat = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "sub": sub,
        "email": email,
        "type": token_type,
        "iat": iat,
        "exp": iat + ttl_seconds,
        "jti": jti if jti is not None else str(uuid.uuid4()),
        "iss": issuer,
        "aud": audience,
    }
    if attribution is None:
        payload["pool"] = POOL_PERSONAL
        payload.update(dict.fromkeys(ORG_KEYS))
    else:
        payload["pool"] = POOL_ORGANIZATION
        payload.update({key: getattr(attribution, key) for key in ORG_KEYS})
    return validate_claims(payload)


def validate_claims(payload: Mapping[str, Any]) -> TokenClaims:
    """Check a payload against the schema (T10) and return it typed.

    Rejects (``ValueError``) missing keys, unknown keys, unknown token types or
    pools, wrong value types, ``exp <= iat``, an org token lacking
    ``clerk_org_id`` / ``organization_id`` / ``seat_id``, and a personal token
    carrying any org key. Unknown keys are refused so that what we verify is
    exactly what we sign.
    """
    keys = set(payload)
    missing = [key for key in CLAIM_KEYS if key not in keys]
    if missing:
        raise ValueError(f"claims lack keys: {', '.join(missing)}")
    unknown = sorted(keys - set(CLAIM_KEYS))
    if unknown:
        raise ValueError(f"claims have unknown keys: {', '.join(unknown)}")

    for key in ("sub", "jti", "iss", "aud"):
        if not _is_nonempty_str(payload[key]):
            raise ValueError(f"claim {key} must be a non-empty string")
    if payload["email"] is not None and not isinstance(payload["email"], str):
        raise ValueError("claim email must be a string or null")
    if payload["type"] not in TOKEN_TYPES:
        raise ValueError("claim type is not a known token type")
    for key in ("iat", "exp"):
        value = payload[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"claim {key} must be an integer")
    if payload["exp"] <= payload["iat"]:
        raise ValueError("claim exp must be after iat")

    pool = payload["pool"]
    if pool not in POOLS:
        raise ValueError("claim pool must be 'organization' or 'personal'")
    for key in ORG_KEYS:
        value = payload[key]
        if value is not None and not isinstance(value, str):
            raise ValueError(f"claim {key} must be a string or null")
    if pool == POOL_ORGANIZATION:
        for key in REQUIRED_ORG_KEYS:
            if not _is_nonempty_str(payload[key]):
                raise ValueError(f"organization token needs {key}")
    else:
        carried = [key for key in ORG_KEYS if payload[key] is not None]
        if carried:
            raise ValueError(f"personal token must not carry {', '.join(carried)}")

    return TokenClaims(**{key: payload[key] for key in CLAIM_KEYS})


def _is_nonempty_str(value: object) -> bool:
    return isinstance(value, str) and value != ""
