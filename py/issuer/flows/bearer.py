"""Verifying the bearer tokens our API receives.

Access tokens are checked by signature and claims alone (no database). A
long-lived extension token is also looked up by hash in ``extension_tokens``
(T7): revoked or unknown means rejected although the signature is valid.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from issuer.claims import TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION, TokenClaims
from issuer.errors import InvalidToken
from issuer.flows.minting import token_hash
from issuer.rpc import Rpc
from issuer.service import Issuer
from issuer.signing import KeyRing

ANY_BEARER = (TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken("missing_bearer_token")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("missing_bearer_token")
    return token


def needs_lookup(claims: TokenClaims) -> bool:
    """Does :func:`check_stored` have to query the database for these claims?"""
    return claims.type != TOKEN_TYPE_ACCESS


def check_stored(rpc: Rpc | None, token: str, claims: TokenClaims) -> dict[str, Any] | None:
    """Second step of :func:`verify_token` (blocking I/O): a long-lived token's stored hash (T7).

    Unknown, revoked or issued to someone else: ``InvalidToken("revoked")``.
    Returns the stored row (``validate_extension_token``) of a long-lived
    token; an access token needs nothing stored (``None``); any other type is
    refused.
    """
    if not needs_lookup(claims):
        return None
    if claims.type != TOKEN_TYPE_EXTENSION or rpc is None:
        raise InvalidToken("wrong_type")
    row = rpc.call("validate_extension_token", p_token_hash=token_hash(token))
    if not isinstance(row, dict) or row.get("clerk_user_id") != claims.sub:
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
