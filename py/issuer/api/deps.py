"""Request dependencies: who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from issuer.claims import TokenClaims
from issuer.clerk import ClerkSession
from issuer.flows.bearer import bearer_token, verify_bearer
from issuer.service import Issuer


def get_issuer(request: Request) -> Issuer:
    issuer: Issuer = request.app.state.issuer
    return issuer


IssuerDep = Annotated[Issuer, Depends(get_issuer)]


def clerk_session(
    issuer: IssuerDep,
    authorization: Annotated[str | None, Header()] = None,
) -> ClerkSession:
    """``Authorization: Bearer <Clerk session token>``, verified against Clerk's JWKS."""
    return issuer.sessions.verify(bearer_token(authorization))


def our_token(
    issuer: IssuerDep,
    authorization: Annotated[str | None, Header()] = None,
) -> TokenClaims:
    """``Authorization: Bearer <a token this issuer signed>`` (access or long-lived)."""
    return verify_bearer(issuer, bearer_token(authorization))


SessionDep = Annotated[ClerkSession, Depends(clerk_session)]
ClaimsDep = Annotated[TokenClaims, Depends(our_token)]
