"""The unified claim schema of every token the issuer signs (pure, no I/O).

One schema for every token type, every key always present, so consumers
(edge functions, the usage endpoint, analysts reading a decoded token) never
guess. With ``pool = 'personal'`` the eight org keys are null; with
``pool = 'organization'`` ``clerk_org_id``, ``organization_id`` and ``seat_id``
are never null (SECURITY.md T10). A :class:`TokenClaims` enforces this when it
is constructed, so every instance is valid; :func:`validate_claims` turns a
payload (a verified token's) into one, refusing missing and unknown keys too.

The schema itself is ``schema/claims.schema.json`` (JSON Schema 2020-12); the
key lists here come from it (:mod:`issuer.claims_schema`, ``make gen``), and
the fields of :class:`TokenClaims` are checked against it at import.
``test_claims.py`` checks that this module and the JSON Schema (a validator
library) accept and refuse the same payloads.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Literal, cast

from issuer import claims_schema
from issuer.claims_schema import CLAIM_KEYS, ORG_KEYS, REQUIRED_ORG_KEYS

TOKEN_TYPE_ACCESS: Final = "access"
"""Short-lived bearer token (OAuth access token, dashboard token)."""

TOKEN_TYPE_EXTENSION: Final = "extension_long_lived"
"""Long-lived extension token; also checked against ``extension_tokens`` (T7)."""

TOKEN_TYPES: Final = frozenset(claims_schema.TOKEN_TYPES)

POOL_ORGANIZATION: Final = "organization"
POOL_PERSONAL: Final = "personal"
POOLS: Final = frozenset(claims_schema.POOLS)

TokenType = Literal["access", "extension_long_lived"]
Pool = Literal["organization", "personal"]

SESSION_CLIENT_ID: Final = "dashboard"
"""``client_id`` of tokens issued to a Clerk session rather than through an
OAuth grant: the web dashboard's access tokens and the long-lived tokens made
there. OAuth grants (code, refresh, device) carry the requesting client's id."""

_CLAIM_KEY_SET: Final = frozenset(CLAIM_KEYS)
_NONEMPTY_STR_KEYS: Final = claims_schema.NONEMPTY_STR_KEYS
_NO_ORG_VALUES: Final = (None,) * len(ORG_KEYS)
_org_values: Final = attrgetter(*ORG_KEYS)
_claim_values: Final = attrgetter(*CLAIM_KEYS)

_ATTRIBUTION_FIELDS: Final = tuple(k for k in ORG_KEYS if k != "org_role")
"""The fields of :class:`OrgAttribution` that ``resolve_org_attribution`` answers
(every org key but ``org_role``, which only Clerk knows)."""

_ATTRIBUTION_RPC_KEYS: Final = ("pool", *_ATTRIBUTION_FIELDS)


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
        org, org_uuid, seat = self.clerk_org_id, self.organization_id, self.seat_id
        if not (
            isinstance(org, str) and org and isinstance(org_uuid, str) and org_uuid
            and isinstance(seat, str) and seat
        ):  # fmt: skip
            key = next(k for k in REQUIRED_ORG_KEYS if not _is_nonempty_str(getattr(self, k)))
            raise ValueError(f"OrgAttribution.{key} must be a non-empty string")
        for key in ORG_KEYS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"OrgAttribution.{key} must be a string or null")

    @classmethod
    def from_rpc(
        cls, row: Mapping[str, Any] | object, *, org_role: str | None = None
    ) -> OrgAttribution:
        """Build from the row returned by ``resolve_org_attribution``.

        ``row`` is the typed client's ``public.org_attribution`` row
        (:class:`issuer.rpc_generated.OrgAttribution`) or the same as a JSON
        object. The RPC's keys are the contract: a missing key is a bug on one
        side and raises ``ValueError`` rather than silently producing a partial
        token. UUIDs are accepted as ``uuid.UUID`` (the typed client decodes them).
        """
        if not isinstance(row, Mapping):
            row = {key: getattr(row, key) for key in _ATTRIBUTION_RPC_KEYS if hasattr(row, key)}
        missing = [key for key in _ATTRIBUTION_RPC_KEYS if key not in row]
        if missing:
            raise ValueError(f"resolve_org_attribution result lacks keys: {', '.join(missing)}")
        if row["pool"] != POOL_ORGANIZATION:
            raise ValueError("resolve_org_attribution result has pool != 'organization'")
        # UUIDs as text; __post_init__ checks every type.
        org, org_uuid, name, customer, subscription, seat, seat_role = (
            str(value) if isinstance(value, uuid.UUID) else value
            for value in map(row.__getitem__, _ATTRIBUTION_FIELDS)
        )
        return cls(
            clerk_org_id=org,
            organization_id=org_uuid,
            organization_name=name,
            stripe_customer_id=customer,
            organization_subscription_id=subscription,
            seat_id=seat,
            seat_role=seat_role,
            org_role=org_role,
        )


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims of one token, valid by construction (T10).

    ``__post_init__`` enforces the value rules of the schema, so every
    ``TokenClaims`` that exists is one we may sign: :func:`build_claims`,
    :func:`validate_claims` and ``dataclasses.replace`` all go through it, and
    :meth:`KeyRing.sign <issuer.signing.KeyRing.sign>` does not validate again.
    The key rules (every key of :data:`CLAIM_KEYS`, no other) hold by the
    dataclass's fields; :func:`validate_claims` checks them for a payload.
    """

    sub: str
    email: str | None
    type: TokenType
    iat: int
    exp: int
    jti: str
    iss: str
    aud: str
    client_id: str
    """RFC 9068 §2.2: the OAuth client the token was issued to (R2)."""
    pool: Pool
    clerk_org_id: str | None
    organization_id: str | None
    organization_name: str | None
    stripe_customer_id: str | None
    organization_subscription_id: str | None
    seat_id: str | None
    seat_role: str | None
    org_role: str | None

    def __post_init__(self) -> None:
        """The value rules of the schema (T10); ``ValueError`` names the first one broken.

        In order: ``sub``, ``jti``, ``iss``, ``aud``, ``client_id`` are non-empty strings;
        ``email`` is a string or null; ``type`` is a known token type; ``iat``
        and ``exp`` are integers (not booleans) with ``exp > iat``; ``pool`` is
        ``organization`` or ``personal``; each org key is a string or null; an
        organization token has non-empty ``clerk_org_id``, ``organization_id``
        and ``seat_id``; a personal token has every org key null. Types are
        checked before membership, so an unhashable value is a ``ValueError``
        too, never a ``TypeError``.
        """
        sub, jti, iss, aud, client_id = self.sub, self.jti, self.iss, self.aud, self.client_id
        if not (
            isinstance(sub, str)
            and sub
            and isinstance(jti, str)
            and jti
            and isinstance(iss, str)
            and iss
            and isinstance(aud, str)
            and aud
            and isinstance(client_id, str)
            and client_id
        ):
            key = next(k for k in _NONEMPTY_STR_KEYS if not _is_nonempty_str(getattr(self, k)))
            raise ValueError(f"claim {key} must be a non-empty string")
        email = self.email
        if email is not None and not isinstance(email, str):
            raise ValueError("claim email must be a string or null")
        token_type = self.type
        if not isinstance(token_type, str) or token_type not in TOKEN_TYPES:
            raise ValueError("claim type is not a known token type")
        iat, exp = self.iat, self.exp
        if isinstance(iat, bool) or not isinstance(iat, int):
            raise ValueError("claim iat must be an integer")
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise ValueError("claim exp must be an integer")
        if exp <= iat:
            raise ValueError("claim exp must be after iat")

        pool = self.pool
        if not isinstance(pool, str) or pool not in POOLS:
            raise ValueError("claim pool must be 'organization' or 'personal'")
        org_values = _org_values(self)
        if pool == POOL_PERSONAL and org_values == _NO_ORG_VALUES:
            return
        for value in org_values:
            if value is not None and not isinstance(value, str):
                key = next(
                    k
                    for k, v in zip(ORG_KEYS, org_values, strict=True)
                    if v is not None and not isinstance(v, str)
                )
                raise ValueError(f"claim {key} must be a string or null")
        if pool == POOL_ORGANIZATION:
            clerk_org_id, organization_id, seat_id = (
                self.clerk_org_id,
                self.organization_id,
                self.seat_id,
            )
            if not (clerk_org_id and organization_id and seat_id):  # all str or None here
                key = next(k for k in REQUIRED_ORG_KEYS if not getattr(self, k))
                raise ValueError(f"organization token needs {key}")
        else:
            carried = [k for k, v in zip(ORG_KEYS, org_values, strict=True) if v is not None]
            raise ValueError(f"personal token must not carry {', '.join(carried)}")

    def to_dict(self) -> dict[str, Any]:
        """The JWT payload: every key of :data:`CLAIM_KEYS` in that order, nulls included.

        A shallow dict of the fields (every value is a str, an int or None):
        ``dataclasses.asdict`` deep-copied them and cost more than the HMAC.
        """
        return dict(zip(CLAIM_KEYS, _claim_values(self), strict=True))

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
    client_id: str = SESSION_CLIENT_ID,
) -> TokenClaims:
    """Claims for a new token: org-scoped when ``attribution`` is given, else personal.

    ``now`` and ``jti`` exist for tests; by default the clock and a random
    UUID are used (``jti`` is on every token so a token can be named in logs and
    revocation lists). Validated once, by ``TokenClaims.__post_init__``.
    """
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be a positive integer")
    iat = int(time.time() if now is None else now)
    a = attribution
    return TokenClaims(
        sub,
        email,
        cast(TokenType, token_type),  # checked by __post_init__
        iat,
        iat + ttl_seconds,
        jti if jti is not None else new_jti(),
        issuer,
        audience,
        client_id,
        POOL_PERSONAL if a is None else POOL_ORGANIZATION,
        # The org keys, in schema order (OrgAttribution has the same names).
        *(_NO_ORG_VALUES if a is None else _org_values(a)),
    )


def new_jti() -> str:
    """A random UUID (version 4, from ``os.urandom``) in its canonical text form.

    The standard library's: a hand-made one saved 3.8 µs of a ~470 µs
    issuance (docs/performance.md, "Issuance"), not worth a copy of RFC 4122.
    """
    return str(uuid.uuid4())


def validate_claims(payload: Mapping[str, Any]) -> TokenClaims:
    """Check a payload against the schema (T10) and return it typed.

    Rejects (``ValueError``) missing keys, unknown keys, unknown token types or
    pools, wrong value types, ``exp <= iat``, an org token lacking
    ``clerk_org_id`` / ``organization_id`` / ``seat_id``, and a personal token
    carrying any org key. Unknown keys are refused so that what we verify is
    exactly what we sign. The key rules are checked here, the value rules by
    ``TokenClaims.__post_init__``.
    """
    keys = payload.keys()
    if keys != _CLAIM_KEY_SET:
        missing = [key for key in CLAIM_KEYS if key not in keys]
        if missing:
            raise ValueError(f"claims lack keys: {', '.join(missing)}")
        unknown = sorted(str(key) for key in keys - _CLAIM_KEY_SET)
        raise ValueError(f"claims have unknown keys: {', '.join(unknown)}")
    # Positional, in field order: keyword arguments whose names are not interned
    # strings (those of a parsed JSON object) are matched by string comparison
    # against every parameter name, a third of the cost of the construction.
    return TokenClaims(*map(payload.__getitem__, CLAIM_KEYS))


def _check_fields_follow_the_schema() -> None:
    """The dataclasses' fields are the schema's keys, in its order (at import)."""
    fields = tuple(f.name for f in dataclasses.fields(TokenClaims))
    if fields != CLAIM_KEYS:  # pragma: no cover - a mismatch is a bug found at import
        raise RuntimeError(f"TokenClaims fields {fields} differ from the schema {CLAIM_KEYS}")
    org = {f.name for f in dataclasses.fields(OrgAttribution)} - {"pool"}
    if org != set(ORG_KEYS):  # pragma: no cover
        raise RuntimeError(f"OrgAttribution fields {org} differ from the schema {ORG_KEYS}")


_check_fields_follow_the_schema()


def _is_nonempty_str(value: object) -> bool:
    return isinstance(value, str) and value != ""
