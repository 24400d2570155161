"""Discovery and health: JWKS, RFC 8414 metadata, /healthz."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from issuer import __version__
from issuer.api.deps import IssuerDep
from issuer.api.models import VersionInfo

router = APIRouter()


@router.get("/.well-known/jwks.json", tags=["discovery"])
def jwks(issuer: IssuerDep) -> JSONResponse:
    """Our public ES256 keys (never private or HMAC material, T8)."""
    return JSONResponse(issuer.keys.public_jwks(), headers={"Cache-Control": "max-age=300"})


@router.get("/.well-known/oauth-authorization-server", tags=["discovery"])
def oauth_metadata(request: Request, issuer: IssuerDep) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    base = str(request.base_url).rstrip("/")
    return {
        "issuer": issuer.settings.jwt_issuer,
        "authorization_endpoint": f"{base}/vscode/authorize",
        "token_endpoint": f"{base}/api/extension/auth/token",
        "revocation_endpoint": f"{base}/api/extension/auth/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
    }


@router.get("/version", tags=["health"])
def version() -> VersionInfo:
    """The release this issuer runs: the same version as its wheel, the Supabase
    bundle it was shipped with and the VS Code extension of that release."""
    return VersionInfo(version=__version__)


@router.get("/healthz", tags=["health"])
def healthz(issuer: IssuerDep) -> JSONResponse:
    """200 when the database answers, 503 otherwise."""
    if issuer.rpc.ping():
        return JSONResponse({"status": "ok"})
    return JSONResponse(
        {"status": "unavailable", "error": "database_unavailable"},
        status_code=503,
        headers={"Retry-After": "1"},
    )
