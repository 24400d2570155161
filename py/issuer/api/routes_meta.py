"""Discovery and health: JWKS, RFC 8414 metadata, /healthz."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from issuer.api.deps import IssuerDep, public_issuer

router = APIRouter()


@router.get("/.well-known/jwks.json", tags=["discovery"])
def jwks(issuer: IssuerDep) -> JSONResponse:
    """Our public ES256 keys (never private or HMAC material, T8)."""
    return JSONResponse(issuer.keys.public_jwks(), headers={"Cache-Control": "max-age=300"})


@router.get("/.well-known/oauth-authorization-server", tags=["discovery"])
def oauth_metadata(request: Request, issuer: IssuerDep) -> dict[str, Any]:
    """RFC 8414 authorization server metadata.

    ``issuer`` is the public base URL (``ISSUER_URL``, R1), the URL this
    document is served under minus the well-known suffix (RFC 8414 §3.3),
    not the tokens' ``iss`` claim (``JWT_ISSUER``).
    """
    base = public_issuer(request)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/vscode/authorize",
        "token_endpoint": f"{base}/api/extension/auth/token",
        "revocation_endpoint": f"{base}/api/extension/auth/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "device_authorization_endpoint": f"{base}/api/extension/auth/device",
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        # RFC 9207: the authorization response carries ``iss`` (success and error).
        "authorization_response_iss_parameter_supported": True,
    }


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
