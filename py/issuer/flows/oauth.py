"""The extension's OAuth flows: PKCE authorization code, refresh grants, revocation.

* ``complete_vscode_auth``: the signed-in user (Clerk session) approves; a
  single-use code (≤ 10 minutes, S256 only) is stored by hash (O1, O3).
* ``exchange_code``: the database consumes the code and checks the verifier
  in one statement, so a code is redeemed once even under concurrency; a
  second redemption revokes what the first issued (O2).
* ``refresh_grant``: the refresh token rotates; reuse outside the grace
  window revokes the whole family (O4-O6).
* ``revoke``: RFC 7009; always "ok" to the caller (O7).

Every grant re-resolves the org scope (Clerk membership + seat), so a token
never outlives the seat that justified it by more than one access-token TTL.
The payer is the one the user approved on the page (R5): the code exchange,
the device poll and every refresh keep it (an org, or personal); a lost seat
or membership is ``invalid_grant`` with ``org_scope_lost``, never a personal
token (L2), and a ``clerk_org_id`` at the token endpoint that names another
payer is ``invalid_grant`` with ``payer_mismatch``, never a switch: choosing
another payer is a new sign-in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from issuer.claims import TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION
from issuer.clerk import ClerkSession
from issuer.errors import BadRequest, InvalidGrant, InvalidToken, OAuthOrgScopeLost, OrgScopeLost
from issuer.flows.minting import CODE_PREFIX, REFRESH_PREFIX, Minted, mint, new_secret, token_hash
from issuer.flows.scope import Scope, check_org_id, keep_scope, resolve_scope, session_for_user
from issuer.rpc_generated import TokenGrantResult
from issuer.service import Issuer

PAYER_MISMATCH = "payer_mismatch"
"""The ``error_description`` prefix of R5's refusal (``invalid_grant``)."""
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
MAX_STATE = 1024


@dataclass(frozen=True)
class AuthorizationCode:
    code: str
    state: str
    redirect_to: str
    scope: Scope


@dataclass(frozen=True)
class TokenGrant:
    access: Minted
    refresh_token: str
    scope: Scope

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access.token,
            "token_type": "Bearer",
            "expires_in": self.access.expires_in,
            "refresh_token": self.refresh_token,
            "pool": self.access.claims.pool,
        }
        denial = self.scope.denial()
        if denial:
            body["org_scope_denied"] = denial
        return body


def check_client(issuer: Issuer, client_id: str, redirect_uri: str) -> None:
    """Unknown client or unregistered redirect URI: never redirect (RFC 6749 §4.1.2.1)."""
    if not client_id or not issuer.clients.known(client_id):
        raise BadRequest("unknown client_id")
    if not redirect_uri or not issuer.clients.redirect_allowed(client_id, redirect_uri):
        raise BadRequest("redirect_uri is not registered for this client")


def check_pkce_request(code_challenge_method: str, code_challenge: str, state: str) -> None:
    """The PKCE parameters and ``state`` of an authorization request; ``BadRequest`` if not.

    S256 only (O1: ``plain`` refused), a 43-character base64url challenge, a
    ``state`` of 1 to ``MAX_STATE`` characters. The authorization page asks
    this too, to answer the registered client before anyone signs in.
    """
    if code_challenge_method != "S256":
        raise BadRequest("code_challenge_method must be S256")  # O1: plain refused
    if not _CHALLENGE.match(code_challenge or ""):
        raise BadRequest("code_challenge must be 43 base64url characters (S256)")
    if not state or len(state) > MAX_STATE:
        raise BadRequest(f"state must be 1 to {MAX_STATE} characters")


def redirect_with(redirect_uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(redirect_uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def complete_vscode_auth(
    issuer: Issuer,
    session: ClerkSession,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    code_challenge_method: str,
    clerk_org_id: str | None = None,
    require_org: bool = False,
    iss: str | None = None,
) -> AuthorizationCode:
    """``iss``: the issuer identifier to add to the redirect (RFC 9207), when known."""
    check_client(issuer, client_id, redirect_uri)
    check_pkce_request(code_challenge_method, code_challenge, state)
    # Decide the scope now, so the user sees a denial before the extension does.
    scope = resolve_scope(issuer, session, clerk_org_id, require_org=require_org)
    code = new_secret(CODE_PREFIX)
    issuer.rpc.create_oauth_code(
        p_code_hash=token_hash(code),
        p_clerk_user_id=session.user_id,
        p_client_id=client_id,
        p_redirect_uri=redirect_uri,
        p_code_challenge=code_challenge,
        p_code_challenge_method="S256",
        p_clerk_org_id=scope.clerk_org_id,
        p_email=session.email,
    )
    answer = {"code": code, "state": state}
    if iss:
        answer["iss"] = iss
    redirect_to = redirect_with(redirect_uri, answer)
    return AuthorizationCode(code, state, redirect_to, scope)


def check_payer(asked: str | None, granted: str | None) -> None:
    """R5: a ``clerk_org_id`` at the token endpoint may only repeat the grant's payer.

    Unset keeps the grant's payer; the same org is no change; anything else
    (another org, or an org for a personal grant) is ``invalid_grant``.
    """
    org = check_org_id(asked)
    if org is not None and org != granted:
        approved = f"organization {granted}" if granted else "personal credits"
        raise InvalidGrant(
            f"{PAYER_MISMATCH}: this grant was approved for {approved}; "
            "clerk_org_id cannot change who pays. Sign in again to choose another account"
        )


def _access(
    issuer: Issuer,
    *,
    clerk_user_id: str,
    email: str | None,
    wanted_org: str | None,
    require_org: bool,
    client_id: str,
) -> tuple[Minted, Scope]:
    """A fresh access token; the org scope is re-resolved (membership + seat) every time."""
    scope = resolve_scope(
        issuer, session_for_user(clerk_user_id), wanted_org, require_org=require_org
    )
    minted = _mint_access(
        issuer, clerk_user_id=clerk_user_id, email=email, scope=scope, client_id=client_id
    )
    return minted, scope


def _mint_access(
    issuer: Issuer, *, clerk_user_id: str, email: str | None, scope: Scope, client_id: str
) -> Minted:
    return mint(
        issuer,
        sub=clerk_user_id,
        email=email,
        token_type=TOKEN_TYPE_ACCESS,
        attribution=scope.attribution,
        ttl_seconds=issuer.settings.access_token_ttl,
        client_id=client_id,  # RFC 9068 §2.2 (R2)
    )


def _refresh_expiry(issuer: Issuer) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=issuer.settings.refresh_token_ttl)


def exchange_code(
    issuer: Issuer,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    client_id: str,
    clerk_org_id: str | None = None,
    require_org: bool = False,
) -> TokenGrant:
    if not code or not code_verifier or not redirect_uri or not client_id:
        raise BadRequest("code, code_verifier, redirect_uri and client_id are required")
    if not _VERIFIER.match(code_verifier):
        raise InvalidGrant("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
    result = issuer.rpc.consume_oauth_code(
        p_code_hash=token_hash(code),
        p_client_id=client_id,
        p_redirect_uri=redirect_uri,
        p_code_verifier=code_verifier,
    )
    if not result.ok:
        raise InvalidGrant(f"authorization code rejected: {result.reason or 'invalid'}")
    return start_family(
        issuer,
        granted=result,
        clerk_org_id=clerk_org_id,
        require_org=require_org,
        client_id=client_id,
    )


def start_family(
    issuer: Issuer,
    *,
    granted: TokenGrantResult,
    clerk_org_id: str | None,
    require_org: bool,
    client_id: str,
) -> TokenGrant:
    """The first access token and a new refresh family, for a redeemed grant.

    ``granted`` is what the store answered for the code (authorization code or
    device code, ``ok``): ``clerk_user_id``, ``email`` and the org chosen on
    the page; a family started from an authorization code remembers it
    (``code_id``), so a second redemption of that code revokes it (O2).
    The payer is the one approved on the page (R5): a ``clerk_org_id`` that
    names another is refused (:func:`check_payer`) before anything is issued
    (the code is spent). The org scope is resolved now (membership + seat),
    and the family keeps the scope that was granted (L2).
    """
    user = _granted_user(granted)
    approved = granted.clerk_org_id or None
    check_payer(clerk_org_id, approved)
    if approved is None:
        access, scope = _access(
            issuer,
            clerk_user_id=user,
            email=granted.email,
            wanted_org=None,
            require_org=require_org,
            client_id=client_id,
        )
    else:
        # The org approved on the page, or nothing: a seat lost since the
        # approval is org_scope_lost, never a personal token (R5, L2).
        try:
            scope = keep_scope(issuer, session_for_user(user), approved)
        except OrgScopeLost as exc:
            raise OAuthOrgScopeLost(exc.clerk_org_id, exc.reason) from exc
        access = _mint_access(
            issuer, clerk_user_id=user, email=granted.email, scope=scope, client_id=client_id
        )
    refresh_token = new_secret(REFRESH_PREFIX)
    issuer.rpc.issue_refresh_token(
        p_token_hash=token_hash(refresh_token),
        p_clerk_user_id=user,
        p_client_id=client_id,
        p_expires_at=_refresh_expiry(issuer),
        p_clerk_org_id=scope.clerk_org_id,
        p_oauth_code_id=granted.code_id,
        p_email=granted.email,
    )
    return TokenGrant(access, refresh_token, scope)


def _granted_user(granted: TokenGrantResult) -> str:
    """The user of a grant the store accepted: an ``ok`` row always names one."""
    if not granted.ok or not granted.clerk_user_id:
        raise InvalidGrant("grant rejected")  # not reached: callers check ok first
    return granted.clerk_user_id


def refresh_grant(
    issuer: Issuer,
    *,
    refresh_token: str,
    client_id: str,
    clerk_org_id: str | None = None,
    require_org: bool = False,
) -> TokenGrant:
    if not refresh_token or not client_id:
        raise BadRequest("refresh_token and client_id are required")
    if not refresh_token.startswith(REFRESH_PREFIX) or len(refresh_token) > 200:
        raise InvalidGrant("not a refresh token")  # T5: a JWT is never a refresh token
    new_token = new_secret(REFRESH_PREFIX)
    result = issuer.rpc.rotate_refresh_token(
        p_old_token_hash=token_hash(refresh_token),
        p_new_token_hash=token_hash(new_token),
        p_client_id=client_id,
        p_new_expires_at=_refresh_expiry(issuer),
        p_grace_seconds=issuer.settings.refresh_grace_seconds,
        p_max_lifetime_seconds=issuer.settings.extension_token_max_lifetime,
    )
    if not result.ok:
        raise InvalidGrant(f"refresh token rejected: {result.reason or 'invalid'}")
    user = _granted_user(result)
    family_org = result.clerk_org_id or None
    try:
        check_payer(clerk_org_id, family_org)
    except InvalidGrant:
        # R5: a refresh never switches the payer. Nothing is issued and the
        # family ends (the new token was never handed out), as for L2.
        issuer.rpc.revoke_refresh_token(p_token_hash=token_hash(new_token))
        raise
    try:
        scope = keep_scope(issuer, session_for_user(user), family_org)
    except OrgScopeLost as exc:
        # Nothing is issued, and the family ends here: the new token was never
        # handed out, so the user signs in again and chooses (L2).
        issuer.rpc.revoke_refresh_token(p_token_hash=token_hash(new_token))
        raise OAuthOrgScopeLost(exc.clerk_org_id, exc.reason) from exc
    access = _mint_access(
        issuer, clerk_user_id=user, email=result.email, scope=scope, client_id=client_id
    )
    return TokenGrant(access, new_token, scope)


def revoke(issuer: Issuer, token: str, token_type_hint: str | None = None) -> None:
    """RFC 7009: revoke a refresh token (and its descendants) or a long-lived token.

    Unknown, malformed or already revoked tokens are not an error (O7).
    """
    if not token or len(token) > 8192:
        return
    if token.startswith(REFRESH_PREFIX):
        issuer.rpc.revoke_refresh_token(p_token_hash=token_hash(token))
        return
    try:
        claims = issuer.keys.verify(token, expected_type=(TOKEN_TYPE_EXTENSION,))
    except InvalidToken:
        return  # access tokens are short-lived and stateless; nothing to revoke
    row = issuer.rpc.validate_extension_token(p_token_hash=token_hash(token))
    if row.ok and row.clerk_user_id == claims.sub and row.id is not None:
        issuer.rpc.revoke_extension_token(p_token_id=row.id, p_clerk_user_id=claims.sub)
