"""Token routes for signed-in users (Clerk session) and the extension."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from issuer.api.deps import IssuerAuthorization, IssuerDep, SessionDep
from issuer.api.models import (
    AccessTokenIssued,
    DashboardTokenIssued,
    ErrorBody,
    ExtensionTokenInfo,
    ExtensionTokenIssued,
    GenerateExtensionToken,
    RefreshExtensionToken,
    RevokeExtensionToken,
    ScopeRequest,
    Validation,
)
from issuer.claims import TOKEN_TYPE_ACCESS
from issuer.clerk import ClerkSession
from issuer.errors import InvalidToken
from issuer.flows import extension_tokens
from issuer.flows.bearer import bearer_token, scoped_claims, verify_with_scope
from issuer.flows.minting import Minted, mint
from issuer.flows.scope import Scope, keep_scope, resolve_scope, token_email
from issuer.service import Issuer

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Routes that take a ``clerk_org_id``: a refused org is 403, nothing issued.
_SCOPE_REFUSED: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorBody,
        "description": "org_scope_denied (require_org, no membership or seat) / "
        "org_scope_lost (a refresh whose seat or membership is gone: L2)",
    }
}


def _issued(result: extension_tokens.IssuedExtensionToken) -> dict[str, Any]:
    return {
        "token": result.minted.token,
        "token_id": result.token_id,
        "token_type": "extension_long_lived",
        "expires_at": result.minted.expires_at,
        "claims": result.minted.claims.to_dict(),
        "org_scope_denied": result.scope.denial(),
    }


@router.post(
    "/api/extension-token/generate",
    status_code=201,
    response_model=ExtensionTokenIssued,
    responses=_SCOPE_REFUSED,
    tags=["extension tokens"],
)
def generate_extension_token(
    issuer: IssuerDep,
    session: SessionDep,
    response: Response,
    body: Annotated[GenerateExtensionToken | None, Body()] = None,
) -> dict[str, Any]:
    """A long-lived extension token for the signed-in user, optionally org-scoped."""
    req = body or GenerateExtensionToken()
    response.headers.update(NO_STORE)
    return _issued(
        extension_tokens.generate(
            issuer,
            session,
            name=req.name,
            clerk_org_id=req.clerk_org_id,
            expires_in_days=req.expires_in_days,
            require_org=req.require_org,
        )
    )


@router.post(
    "/api/extension-token/refresh",
    response_model=ExtensionTokenIssued,
    responses=_SCOPE_REFUSED,
    tags=["extension tokens"],
)
def refresh_extension_token(
    issuer: IssuerDep,
    response: Response,
    authorization: IssuerAuthorization,
    body: Annotated[RefreshExtensionToken | None, Body()] = None,
) -> dict[str, Any]:
    """Rotate a long-lived token (bearer): org re-checked, the old token revoked."""
    req = body or RefreshExtensionToken()
    response.headers.update(NO_STORE)
    return _issued(
        extension_tokens.refresh(
            issuer,
            bearer_token(authorization),
            clerk_org_id=req.clerk_org_id,
            require_org=req.require_org,
        )
    )


@router.get(
    "/api/extension-token", response_model=list[ExtensionTokenInfo], tags=["extension tokens"]
)
def list_extension_tokens(issuer: IssuerDep, session: SessionDep) -> list[ExtensionTokenInfo]:
    """The caller's long-lived tokens (never the token itself)."""
    return [
        ExtensionTokenInfo(
            id=str(t.id),
            name=t.name,
            clerk_org_id=t.clerk_org_id,
            created_at=t.created_at,
            last_used_at=t.last_used_at,
            expires_at=t.expires_at,
            revoked_at=t.revoked_at,
        )
        for t in extension_tokens.list_tokens(issuer, session)
    ]


@router.post("/api/extension-token/revoke", status_code=204, tags=["extension tokens"])
def revoke_extension_token(
    issuer: IssuerDep, session: SessionDep, body: RevokeExtensionToken
) -> Response:
    extension_tokens.revoke(issuer, session, body.token_id)
    return Response(status_code=204)


def _session_access_token(
    issuer: Issuer, session: ClerkSession, req: ScopeRequest
) -> tuple[Minted, Scope]:
    """An access token for a Clerk session, org-scoped when membership and seat allow."""
    scope = resolve_scope(issuer, session, req.clerk_org_id, require_org=req.require_org)
    return _mint_for_session(issuer, session, scope), scope


def _mint_for_session(issuer: Issuer, session: ClerkSession, scope: Scope) -> Minted:
    return mint(
        issuer,
        sub=session.user_id,
        email=token_email(issuer, session, scope),
        token_type=TOKEN_TYPE_ACCESS,
        attribution=scope.attribution,
        ttl_seconds=issuer.settings.access_token_ttl,
    )


@router.post(
    "/api/auth/refresh-token",
    response_model=AccessTokenIssued,
    responses=_SCOPE_REFUSED,
    tags=["access tokens"],
)
def refresh_access_token(
    issuer: IssuerDep,
    session: SessionDep,
    response: Response,
    body: Annotated[ScopeRequest | None, Body()] = None,
) -> dict[str, Any]:
    """A fresh access token for the Clerk session (the dashboard's refresh).

    A refresh keeps its org: when the seat or membership in ``clerk_org_id``
    is gone the answer is 403 ``org_scope_lost`` and nothing is issued (L2).
    The first token for an org comes from ``/api/dashboard-token/generate``.
    """
    req = body or ScopeRequest()
    scope = keep_scope(issuer, session, req.clerk_org_id)
    minted = _mint_for_session(issuer, session, scope)
    response.headers.update(NO_STORE)
    return {
        "access_token": minted.token,
        "token_type": "Bearer",
        "expires_in": minted.expires_in,
        "pool": minted.claims.pool,
        "org_scope_denied": scope.denial(),
    }


@router.post(
    "/api/dashboard-token/generate",
    response_model=DashboardTokenIssued,
    responses=_SCOPE_REFUSED,
    tags=["access tokens"],
)
def generate_dashboard_token(
    issuer: IssuerDep,
    session: SessionDep,
    response: Response,
    body: Annotated[ScopeRequest | None, Body()] = None,
) -> dict[str, Any]:
    """A short-lived access token for the web dashboard."""
    minted, scope = _session_access_token(issuer, session, body or ScopeRequest())
    response.headers.update(NO_STORE)
    return {
        "token": minted.token,
        "expires_at": minted.expires_at,
        "claims": minted.claims.to_dict(),
        "org_scope_denied": scope.denial(),
    }


@router.get(
    "/api/extension/auth/validate",
    response_model=Validation,
    responses={401: {"model": Validation}},
    tags=["access tokens"],
)
def validate_token(
    issuer: IssuerDep,
    response: Response,
    authorization: IssuerAuthorization,
) -> dict[str, Any]:
    """Is this bearer token (access or long-lived) valid now? Returns its claims.

    For an org-scoped token the seat is re-checked in the same single database
    round trip (L5): ``org_scope`` is ``active`` or ``lost`` (with
    ``org_scope_reason``); a lost scope's claims carry no ``seat_role`` /
    ``org_role``, and an active one's ``seat_role`` is the seat's current role.
    """
    response.headers.update(NO_STORE)
    try:
        claims, check = verify_with_scope(issuer.keys, issuer.rpc, bearer_token(authorization))
    except InvalidToken as exc:
        response.status_code = 401
        response.headers["WWW-Authenticate"] = exc.challenge()
        return {"valid": False, "error": exc.reason}
    return {
        "valid": True,
        "claims": scoped_claims(claims, check).to_dict(),
        "org_scope": check.org_scope if check else None,
        "org_scope_reason": check.reason if check else None,
    }
