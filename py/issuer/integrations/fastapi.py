"""Verify the issuer's tokens in another Python backend (FastAPI).

A backend that spends credits needs two things from a request: who is calling
and which pool pays. Both come from a token this issuer signed, verified here
with the issuer's own :class:`~issuer.signing.KeyRing` (same algorithm
allow-list, ``iss`` / ``aud`` / ``exp`` / ``iat`` / ``type`` / ``typ`` checks,
claim schema), so nothing about verification is re-implemented::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from issuer.claims import TokenClaims
    from issuer.integrations.fastapi import TokenVerifier, install, require_token

    app = FastAPI()
    install(app, TokenVerifier.from_env())   # the JWT_* variables of VERIFIER_ENV

    @app.get("/me")
    def me(claims: Annotated[TokenClaims, Depends(require_token)]) -> dict[str, str | None]:
        return {"user": claims.sub, "pool": claims.pool, "org": claims.clerk_org_id}

Configuration is the issuer's ``JWT_*`` variables and nothing else: no
Clerk, no database. Access tokens are verified by signature and claims alone.
Long-lived extension tokens are revocable, so they are accepted only when the
verifier is given an :class:`~issuer.rpc.Rpc` to look their hash up in
``extension_tokens`` (SECURITY.md T7); without one they are refused as
``wrong_type``.

With an ``rpc`` the seat behind an org-scoped token is re-checked too (L5),
in the one database round trip a long-lived token already costs (one
``check_org_scope`` call for an org-scoped access token; none for a personal
one). A lost scope is refused with 403 ``org_scope_lost`` unless the backend
opts out (``allow_lost_org_scope=True``); then the claims it gets carry no
``seat_role`` / ``org_role``, so a revoked owner is never treated as an owner.
An active scope's ``seat_role`` is the seat's current role.

:func:`install` also maps the issuer's errors to responses the way the issuer
does: ``{"error": code, "error_description": ...}`` with the error's status
(401 with ``WWW-Authenticate`` for a bad token, 409 ``idempotency_key_reused``,
400 for input the database refused, 503 with ``Retry-After`` when the database
is unreachable).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from issuer.claims import TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION, TokenClaims
from issuer.errors import InvalidToken, IssuerError, OrgScopeLost
from issuer.flows.bearer import OrgScopeCheck, scoped_claims, verify_with_scope
from issuer.rpc import Rpc
from issuer.settings import load_settings
from issuer.signing import KeyRing

__all__ = [
    "VERIFIER_ENV",
    "TokenClaimsDep",
    "TokenVerifier",
    "error_response",
    "install",
    "require_token",
]

VERIFIER_ENV: Final = (
    "JWT_SECRET",
    "JWT_SIGNING_KEYS",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_ACCEPT_HS256",
)
"""The only variables :meth:`TokenVerifier.from_env` reads."""


class TokenVerifier:
    """Verifies bearer tokens signed by the issuer; thread-safe.

    ``rpc`` (optional) enables long-lived extension tokens: each one is also
    looked up by hash (``validate_extension_token``) and refused when revoked,
    expired or unknown, although its signature is valid.
    """

    def __init__(
        self, keys: KeyRing, *, rpc: Rpc | None = None, allow_lost_org_scope: bool = False
    ) -> None:
        self.keys = keys
        self.rpc = rpc
        self.allow_lost_org_scope = allow_lost_org_scope

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        rpc: Rpc | None = None,
        allow_lost_org_scope: bool = False,
    ) -> TokenVerifier:
        """Build from ``JWT_SECRET``, ``JWT_SIGNING_KEYS``, ``JWT_ISSUER``, ``JWT_AUDIENCE``
        and ``JWT_ACCEPT_HS256`` (``false`` refuses every HS256 token, L6).

        ``env`` defaults to ``os.environ``; other variables are ignored. A
        missing or bad value raises :class:`~issuer.errors.ConfigError` naming
        the variable (the issuer's own validation: e.g. a secret under 32 bytes).
        """
        source = os.environ if env is None else env
        settings = load_settings({name: source[name] for name in VERIFIER_ENV if name in source})
        return cls(
            KeyRing.from_settings(settings), rpc=rpc, allow_lost_org_scope=allow_lost_org_scope
        )

    @property
    def accepted_types(self) -> tuple[str, ...]:
        """Token types this verifier accepts."""
        if self.rpc is None:
            return (TOKEN_TYPE_ACCESS,)
        return (TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION)

    def verify(self, token: str) -> TokenClaims:
        """The token's claims, or :class:`~issuer.errors.InvalidToken` (with a short ``reason``).

        With an ``rpc``, an org-scoped token whose seat is no longer active
        raises :class:`~issuer.errors.OrgScopeLost` (403), unless
        ``allow_lost_org_scope``: then its claims come without role claims.
        """
        claims, check = self.check(token)
        if check is not None and check.org_scope == "lost" and not self.allow_lost_org_scope:
            raise OrgScopeLost(claims.clerk_org_id or "", check.reason or "no_active_seat")
        return scoped_claims(claims, check)

    def check(self, token: str) -> tuple[TokenClaims, OrgScopeCheck | None]:
        """The token's signed claims and, for an org-scoped token (with an ``rpc``), its seat check."""
        return verify_with_scope(self.keys, self.rpc, token, allowed=self.accepted_types)


_bearer = HTTPBearer(auto_error=False, description="A token signed by the issuer")


def get_verifier(request: Request) -> TokenVerifier:
    """The verifier :func:`install` put on the app."""
    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        raise RuntimeError(
            "no TokenVerifier: call issuer.integrations.fastapi.install(app, verifier)"
        )
    return verifier


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> TokenClaims:
    """FastAPI dependency: the verified claims of ``Authorization: Bearer <token>``.

    Raises :class:`~issuer.errors.InvalidToken` (401 once :func:`install` is
    called) when the header is missing or the token does not verify.
    """
    if credentials is None or not credentials.credentials:
        raise InvalidToken("missing_bearer_token")
    return get_verifier(request).verify(credentials.credentials)


TokenClaimsDep = Annotated[TokenClaims, Depends(require_token)]
"""``claims: TokenClaimsDep`` in a route's signature."""


def error_response(exc: IssuerError) -> JSONResponse:
    """``{"error", "error_description"}`` with the error's status and headers."""
    body: dict[str, Any] = {"error": exc.code, "error_description": exc.message}
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and not isinstance(exc, InvalidToken):
        body["reason"] = reason
    if isinstance(exc, OrgScopeLost):
        body["clerk_org_id"] = exc.clerk_org_id
    headers: dict[str, str] = {}
    if (challenge := exc.challenge()) is not None:
        headers["WWW-Authenticate"] = challenge
    if exc.status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(body, status_code=exc.status, headers=headers)


def install(app: FastAPI, verifier: TokenVerifier) -> None:
    """Make ``require_token`` use ``verifier`` and answer the issuer's errors as JSON."""
    app.state.token_verifier = verifier

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, IssuerError):  # pragma: no cover - registered for IssuerError
            raise exc
        return error_response(exc)

    app.add_exception_handler(IssuerError, handle)
