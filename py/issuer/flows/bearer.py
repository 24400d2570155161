"""Verifying the bearer tokens our API receives.

Access tokens are checked by signature and claims alone (no database). A
long-lived extension token is also looked up by hash in ``extension_tokens``
(T7): revoked or unknown means rejected although the signature is valid.

Validation (``GET /api/extension/auth/validate``, the Python integration)
also re-checks the seat behind an org-scoped token (L5): in the lookup a
long-lived token already makes, or in one ``check_org_scope`` call for an
org-scoped access token. A lost scope is reported, and the role claims are
never passed on for it (:func:`scoped_claims`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from issuer.claims import TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION, TokenClaims
from issuer.errors import MISSING_BEARER_TOKEN, InvalidToken
from issuer.flows.minting import token_hash
from issuer.rpc import Rpc
from issuer.rpc_generated import ExtensionTokenResult, OrgScopeResult
from issuer.service import Issuer
from issuer.signing import KeyRing

ANY_BEARER = (TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken(MISSING_BEARER_TOKEN)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken(MISSING_BEARER_TOKEN)
    return token


def needs_lookup(claims: TokenClaims) -> bool:
    """Does :func:`check_stored` have to query the database for these claims?"""
    return claims.type != TOKEN_TYPE_ACCESS


def check_stored(rpc: Rpc | None, token: str, claims: TokenClaims) -> ExtensionTokenResult | None:
    """Second step of :func:`verify_token` (blocking I/O): a long-lived token's stored hash (T7).

    Unknown, revoked, expired (any refusal of ``validate_extension_token``) or
    issued to someone else: ``InvalidToken("revoked")``. Returns the stored
    row of a long-lived token; an access token needs nothing stored
    (``None``); any other type is refused.
    """
    if not needs_lookup(claims):
        return None
    if claims.type != TOKEN_TYPE_EXTENSION or rpc is None:
        raise InvalidToken("wrong_type")
    row = rpc.validate_extension_token(p_token_hash=token_hash(token))
    if not row.ok or row.clerk_user_id != claims.sub:
        raise InvalidToken("revoked")
    return row


def verify_token(
    keys: KeyRing, rpc: Rpc | None, token: str, *, allowed: Collection[str] = ANY_BEARER
) -> TokenClaims:
    """Signature and claims; for a long-lived token also its stored hash (T7).

    Without an ``rpc`` a long-lived token cannot be checked for revocation,
    so it is refused (fail closed). Async callers run the two steps apart:
    ``KeyRing.verify`` inline, :func:`check_stored` in a thread.
    """
    claims = keys.verify(token, expected_type=allowed)
    check_stored(rpc, token, claims)
    return claims


def verify_bearer(
    issuer: Issuer, token: str, *, allowed: Collection[str] = ANY_BEARER
) -> TokenClaims:
    return verify_token(issuer.keys, issuer.rpc, token, allowed=allowed)


@dataclass(frozen=True, slots=True)
class OrgScopeCheck:
    """Whether an org-scoped token's seat still holds (L5)."""

    org_scope: Literal["active", "lost"]
    reason: str | None = None
    seat_role: str | None = None

    @classmethod
    def from_row(cls, row: ExtensionTokenResult | OrgScopeResult) -> OrgScopeCheck:
        """The database's answer for an org-scoped token: only ``active`` keeps it (fail closed)."""
        if row.org_scope == "active":
            return cls("active", None, row.seat_role)
        return cls("lost", row.org_scope_reason or "no_active_seat", None)


def verify_with_scope(
    keys: KeyRing, rpc: Rpc | None, token: str, *, allowed: Collection[str] = ANY_BEARER
) -> tuple[TokenClaims, OrgScopeCheck | None]:
    """:func:`verify_token` plus the org scope's check, in at most ONE database round trip.

    A long-lived token's lookup (T7) carries the check; an org-scoped access
    token costs one ``check_org_scope`` call; a personal access token none.
    Without ``rpc`` an access token's scope cannot be checked (``None``).
    """
    claims = keys.verify(token, expected_type=allowed)
    stored = check_stored(rpc, token, claims)
    if not claims.is_org_scoped or claims.clerk_org_id is None:
        return claims, None
    if stored is not None:
        return claims, OrgScopeCheck.from_row(stored)
    if rpc is None:
        return claims, None
    scope = rpc.check_org_scope(p_clerk_user_id=claims.sub, p_clerk_org_id=claims.clerk_org_id)
    return claims, OrgScopeCheck.from_row(scope)


def scoped_claims(claims: TokenClaims, check: OrgScopeCheck | None) -> TokenClaims:
    """The claims a backend may act on: the seat's current role; no role when the scope is lost.

    A revoked owner is never reported as an owner (L5).
    """
    if check is None:
        return claims
    if check.org_scope == "lost":
        return dataclasses.replace(claims, seat_role=None, org_role=None)
    if check.seat_role and check.seat_role != claims.seat_role:
        return dataclasses.replace(claims, seat_role=check.seat_role)
    return claims
