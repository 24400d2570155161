"""Request dependencies: who is calling.

FastAPI runs a plain ``def`` dependency on a worker thread, one hand-off
each way per dependency. The ones here that do no blocking I/O are
``async def`` and run on the event loop; a long-lived token's database
lookup, the only blocking step of :func:`our_token`, goes to a thread.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from issuer.claims import TokenClaims
from issuer.clerk import ClerkSession
from issuer.flows.bearer import ANY_BEARER, bearer_token, check_stored, needs_lookup
from issuer.service import Issuer


async def get_issuer(request: Request) -> Issuer:
    issuer: Issuer = request.app.state.issuer
    return issuer


IssuerDep = Annotated[Issuer, Depends(get_issuer)]


def public_issuer(request: Request) -> str:
    """The issuer identifier (RFC 8414 §2, RFC 9207): ``ISSUER_URL``, else this request's base.

    ``issuer serve`` always has ``ISSUER_URL`` (set on loopback, required
    elsewhere: L11); only an in-process app built without it (the tests)
    falls back to the request. Not the tokens' ``iss`` (``JWT_ISSUER``): see
    docs/api.md, "Discovery".
    """
    issuer: Issuer | None = request.app.state.issuer
    if issuer is not None and issuer.settings.issuer_url:
        return issuer.settings.issuer_url
    return str(request.base_url).rstrip("/")


def absolute_url(request: Request, path: str, query: str = "") -> str:
    """``path`` (and ``query``) on :func:`public_issuer`: never on the Host header (L11).

    ``path`` is the full path of this server (``root_path`` included), as
    ``request.url.path`` is; only the scheme and host come from ``ISSUER_URL``.
    """
    return public_issuer(request) + path + (f"?{query}" if query else "")


class BearerScheme(HTTPBearer):
    """An OpenAPI ``http`` / ``bearer`` security scheme (JWT) that answers the raw header.

    FastAPI documents the scheme and each route's ``security`` from it, so a
    generated client sends the token by itself; parsing and refusing stay in
    :func:`~issuer.flows.bearer.bearer_token` (RFC 6750 challenges, and the
    validate route's ``{"valid": false}``), not in FastAPI's own 403.
    """

    def __init__(self, name: str, description: str) -> None:
        super().__init__(
            bearerFormat="JWT", scheme_name=name, description=description, auto_error=False
        )

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return request.headers.get("authorization")


CLERK_SESSION = BearerScheme(
    "clerkSession", "A Clerk session token of the signed-in user (the dashboard, the sign-in page)."
)
ISSUER_TOKEN = BearerScheme(
    "issuerToken",
    "A token this issuer signed: an access token (RFC 9068 `at+jwt`) or a long-lived "
    "extension token.",
)

#: The raw ``Authorization`` header of a route that takes a Clerk session / one of our tokens.
ClerkAuthorization = Annotated[str | None, Security(CLERK_SESSION)]
IssuerAuthorization = Annotated[str | None, Security(ISSUER_TOKEN)]


def clerk_session(issuer: IssuerDep, authorization: ClerkAuthorization) -> ClerkSession:
    """``Authorization: Bearer <Clerk session token>``, verified against Clerk's JWKS.

    Sync on purpose: it may fetch Clerk's JWKS (blocking HTTP).
    """
    return issuer.sessions.verify(bearer_token(authorization))


async def our_token(request: Request, authorization: IssuerAuthorization) -> TokenClaims:
    """``Authorization: Bearer <a token this issuer signed>`` (access or long-lived).

    :func:`issuer.flows.bearer.verify_token` in its two steps: signature and
    claims here (CPU only), a long-lived token's revocation lookup (T7) on a
    worker thread.
    """
    issuer: Issuer = request.app.state.issuer
    token = bearer_token(authorization)
    claims = issuer.keys.verify(token, expected_type=ANY_BEARER)
    if needs_lookup(claims):
        await run_in_threadpool(check_stored, issuer.rpc, token, claims)
    return claims


SessionDep = Annotated[ClerkSession, Depends(clerk_session)]
ClaimsDep = Annotated[TokenClaims, Depends(our_token)]
