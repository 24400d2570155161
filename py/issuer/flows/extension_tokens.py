"""Long-lived extension tokens: generate, refresh (rotate), list, revoke.

A long-lived token is a JWT of type ``extension_long_lived``; the database
keeps its SHA-256 hash, so it can be revoked (T7) and listed without ever
being shown again.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from issuer.claims import TOKEN_TYPE_EXTENSION
from issuer.clerk import ClerkSession
from issuer.errors import BadRequest, InvalidToken, NotFound
from issuer.flows.bearer import check_stored
from issuer.flows.minting import Minted, mint, token_hash
from issuer.flows.scope import (
    Scope,
    check_org_id,
    keep_scope,
    resolve_scope,
    session_for_user,
    token_email,
)
from issuer.rpc_generated import ListExtensionTokensRow
from issuer.service import Issuer

MAX_NAME_LENGTH = 100
MAX_DAYS = 365


@dataclass(frozen=True)
class IssuedExtensionToken:
    minted: Minted
    token_id: str
    scope: Scope


def max_days(issuer: Issuer) -> int:
    """The longest ``expires_in_days`` a caller may ask for (L4): the configured
    lifetimes are maxima (EXTENSION_TOKEN_TTL, EXTENSION_TOKEN_MAX_LIFETIME)."""
    settings = issuer.settings
    return min(
        MAX_DAYS,
        settings.extension_token_ttl // 86_400,
        settings.extension_token_max_lifetime // 86_400,
    )


def _ttl(issuer: Issuer, expires_in_days: int | None) -> int:
    """Seconds the new token lives: the default lifetime, or fewer days asked for.

    Asking for more than the configured maximum is 400, not a silent clamp:
    the caller learns the limit (L4, docs/api.md).
    """
    settings = issuer.settings
    if expires_in_days is None:
        return min(settings.extension_token_ttl, settings.extension_token_max_lifetime)
    limit = max_days(issuer)
    if limit < 1:
        raise BadRequest("expires_in_days cannot be chosen: the configured lifetime is under a day")
    if not 1 <= expires_in_days <= limit:
        raise BadRequest(
            f"expires_in_days must be between 1 and {limit} (the configured maximum lifetime)"
        )
    return expires_in_days * 86_400


def generate(
    issuer: Issuer,
    session: ClerkSession,
    *,
    name: str | None = None,
    clerk_org_id: str | None = None,
    expires_in_days: int | None = None,
    require_org: bool = False,
) -> IssuedExtensionToken:
    label = (name or "VS Code").strip()
    if not label or len(label) > MAX_NAME_LENGTH:
        raise BadRequest(f"name must be 1 to {MAX_NAME_LENGTH} characters")
    scope = resolve_scope(issuer, session, clerk_org_id, require_org=require_org)
    minted = mint(
        issuer,
        sub=session.user_id,
        email=token_email(issuer, session, scope),
        token_type=TOKEN_TYPE_EXTENSION,
        attribution=scope.attribution,
        ttl_seconds=_ttl(issuer, expires_in_days),
    )
    token_id = issuer.rpc.create_extension_token(
        p_clerk_user_id=session.user_id,
        p_token_hash=token_hash(minted.token),
        p_name=label,
        p_expires_at=minted.expires_at,
        p_clerk_org_id=scope.clerk_org_id,
        p_jti=minted.claims.jti,
    )
    return IssuedExtensionToken(minted, str(token_id), scope)


def refresh(
    issuer: Issuer,
    old_token: str,
    *,
    clerk_org_id: str | None = None,
    require_org: bool = False,
) -> IssuedExtensionToken:
    """Rotate a long-lived token: the org is re-checked, the old token revoked.

    Without ``clerk_org_id`` (or with the old token's org) the new token keeps
    the old token's scope: membership is re-read from Clerk's API and the seat
    from the database, and a lost seat or membership is
    :class:`~issuer.errors.OrgScopeLost` (403): nothing is rotated or issued
    (L2). Another ``clerk_org_id`` is the user's choice, a first request for it.
    """
    claims = issuer.keys.verify(old_token, expected_type=(TOKEN_TYPE_EXTENSION,))
    stored = check_stored(issuer.rpc, old_token, claims)
    # L3: the chain's absolute lifetime, from the original sign-in; rotating
    # never extends it.
    chain_started_at = stored.chain_started_at if stored else None
    chain_start = chain_started_at.timestamp() if chain_started_at else time.time()
    chain_end = chain_start + issuer.settings.extension_token_max_lifetime
    left = int(chain_end - time.time())
    if left <= 0:
        raise InvalidToken("chain_expired")
    asked = check_org_id(clerk_org_id)
    old_org = claims.clerk_org_id if claims.is_org_scoped else None
    if asked and asked != old_org:
        scope = resolve_scope(issuer, session_for_user(claims.sub), asked, require_org=require_org)
    else:
        scope = keep_scope(issuer, session_for_user(claims.sub), old_org)
    remaining = max(claims.exp - claims.iat, 86_400)
    minted = mint(
        issuer,
        sub=claims.sub,
        email=claims.email or token_email(issuer, session_for_user(claims.sub), scope),
        token_type=TOKEN_TYPE_EXTENSION,
        attribution=scope.attribution,
        ttl_seconds=min(remaining, issuer.settings.extension_token_ttl, left),
        client_id=claims.client_id,
    )
    row = issuer.rpc.rotate_extension_token(
        p_old_token_hash=token_hash(old_token),
        p_new_token_hash=token_hash(minted.token),
        p_new_expires_at=minted.expires_at,
        p_clerk_org_id=scope.clerk_org_id,
        p_jti=minted.claims.jti,
        p_max_lifetime_seconds=issuer.settings.extension_token_max_lifetime,
    )
    # Any refusal (revoked, expired, account_closed, chain_expired, a lost
    # race) is the same 401 for the caller.
    if not row.ok or row.id is None:
        raise InvalidToken("revoked")
    return IssuedExtensionToken(minted, str(row.id), scope)


def list_tokens(issuer: Issuer, session: ClerkSession) -> list[ListExtensionTokensRow]:
    """The user's tokens, newest first (``list_extension_tokens``), never the hashes."""
    return issuer.rpc.list_extension_tokens(p_clerk_user_id=session.user_id)


def revoke(issuer: Issuer, session: ClerkSession, token_id: str) -> None:
    if not token_id or len(token_id) > 64:
        raise BadRequest("token_id is required")
    try:
        parsed = uuid.UUID(token_id)
    except ValueError as exc:
        raise BadRequest("token_id must be a uuid") from exc
    done = issuer.rpc.revoke_extension_token(p_token_id=parsed, p_clerk_user_id=session.user_id)
    if not done:
        raise NotFound("no such token")
