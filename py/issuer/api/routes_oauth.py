"""The extension's OAuth endpoints: PKCE code creation, token endpoint, revocation."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from issuer.api.deps import IssuerDep, SessionDep, public_issuer
from issuer.api.models import (
    AuthorizationCodeIssued,
    CompleteVscodeAuth,
    DeviceAuthorizationIssued,
    DeviceAuthorizationRequest,
    ErrorBody,
    RevokeRequest,
    TokenIssued,
    TokenRequest,
)
from issuer.errors import BadRequest, InvalidClient, IssuerError
from issuer.flows import device, oauth

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _form_or_json(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for endpoints that read forms (RFC 6749) or JSON themselves."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": schema},
                "application/json": {"schema": schema},
            },
        }
    }


class UnsupportedGrantType(IssuerError):
    code = "unsupported_grant_type"
    status = 400


#: The token and device endpoints' client check (R3): documented for generated clients.
_INVALID_CLIENT: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "invalid_client: unknown or missing client_id (RFC 6749 §5.2, R3)",
    }
}

GRANT_TYPES = ("authorization_code", "refresh_token", device.GRANT_TYPE)


async def _params(request: Request) -> dict[str, Any]:
    """OAuth clients send forms (RFC 6749); ours may send JSON. Both are accepted."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    if ctype == "application/json" or not ctype:
        raw = await request.body()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadRequest("body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        return data
    raise BadRequest("send application/x-www-form-urlencoded or application/json")


ModelT = TypeVar("ModelT", bound=BaseModel)


def _model(cls: type[ModelT], data: dict[str, Any]) -> ModelT:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise BadRequest(f"{where}: {first.get('msg', 'invalid')}") from exc


@router.post(
    "/api/auth/complete-vscode-auth",
    response_model=AuthorizationCodeIssued,
    tags=["extension sign-in"],
)
def complete_vscode_auth(
    issuer: IssuerDep,
    session: SessionDep,
    body: CompleteVscodeAuth,
    request: Request,
    response: Response,
) -> dict[str, Any]:
    """The signed-in user approves the extension: a single-use PKCE code."""
    result = oauth.complete_vscode_auth(
        issuer,
        session,
        client_id=body.client_id,
        redirect_uri=body.redirect_uri,
        state=body.state,
        code_challenge=body.code_challenge,
        code_challenge_method=body.code_challenge_method,
        clerk_org_id=body.clerk_org_id,
        require_org=body.require_org,
        iss=public_issuer(request),
    )
    response.headers.update(NO_STORE)
    return {
        "code": result.code,
        "state": result.state,
        "redirect_to": result.redirect_to,
        "org_scope_denied": result.scope.denial(),
    }


_AUTH_SCHEME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}$")


def _check_client(issuer: IssuerDep, request: Request, client_id: str | None) -> None:
    """R3: an unknown or missing ``client_id`` is 401 ``invalid_client`` (RFC 6749 §5.2).

    Our clients are public, so "client authentication" is the registered
    ``client_id``. A request that tried an ``Authorization`` scheme gets a
    challenge of that scheme, as §5.2 asks.
    """
    if client_id and issuer.clients.known(client_id):
        return
    scheme = request.headers.get("authorization", "").split(" ", 1)[0]
    raise InvalidClient(
        "unknown client_id" if client_id else "client_id is required",
        scheme=scheme if _AUTH_SCHEME.match(scheme) else None,
    )


async def _token(issuer: IssuerDep, request: Request, response: Response) -> dict[str, Any]:
    req = _model(TokenRequest, await _params(request))
    if req.grant_type not in GRANT_TYPES:
        raise UnsupportedGrantType("grant_type must be " + " or ".join(GRANT_TYPES))
    _check_client(issuer, request, req.client_id)
    if req.grant_type == "authorization_code":
        grant = oauth.exchange_code(
            issuer,
            code=req.code or "",
            code_verifier=req.code_verifier or "",
            redirect_uri=req.redirect_uri or "",
            client_id=req.client_id or "",
            clerk_org_id=req.clerk_org_id,
            require_org=req.require_org,
        )
    elif req.grant_type == "refresh_token":
        grant = oauth.refresh_grant(
            issuer,
            refresh_token=req.refresh_token or "",
            client_id=req.client_id or "",
            clerk_org_id=req.clerk_org_id,
            require_org=req.require_org,
        )
    elif req.grant_type == device.GRANT_TYPE:
        grant = device.device_grant(
            issuer,
            device_code=req.device_code or "",
            client_id=req.client_id or "",
            clerk_org_id=req.clerk_org_id,
            require_org=req.require_org,
        )
    else:
        raise AssertionError(req.grant_type)  # GRANT_TYPES is checked above
    response.headers.update(NO_STORE)
    return grant.response()


@router.post(
    "/api/extension/auth/token",
    response_model=TokenIssued,
    responses=_INVALID_CLIENT,
    openapi_extra=_form_or_json(TokenRequest),
    tags=["extension sign-in"],
)
async def extension_token_endpoint(
    issuer: IssuerDep, request: Request, response: Response
) -> dict[str, Any]:
    """OAuth token endpoint (public client, PKCE): code or refresh grant."""
    return await _token(issuer, request, response)


@router.post(
    "/api/auth/token",
    response_model=TokenIssued,
    responses=_INVALID_CLIENT,
    openapi_extra=_form_or_json(TokenRequest),
    tags=["extension sign-in"],
)
async def token_endpoint(issuer: IssuerDep, request: Request, response: Response) -> dict[str, Any]:
    """The same token endpoint at the original system's second path."""
    return await _token(issuer, request, response)


@router.post(
    "/api/extension/auth/device",
    response_model=DeviceAuthorizationIssued,
    responses=_INVALID_CLIENT,
    openapi_extra=_form_or_json(DeviceAuthorizationRequest),
    tags=["extension sign-in"],
)
async def device_authorization(
    issuer: IssuerDep, request: Request, response: Response
) -> dict[str, Any]:
    """RFC 8628 device authorization: codes for a client whose redirect cannot come back (R4)."""
    req = _model(DeviceAuthorizationRequest, await _params(request))
    _check_client(issuer, request, req.client_id)
    started = await run_in_threadpool(device.start, issuer, req.client_id or "")
    verification_uri = public_issuer(request) + "/vscode/device"
    response.headers.update(NO_STORE)
    return {
        "device_code": started.device_code,
        "user_code": started.user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": verification_uri
        + "?"
        + urlencode({"user_code": started.user_code}),
        "expires_in": started.expires_in,
        "interval": started.interval,
    }


@router.post(
    "/api/extension/auth/revoke",
    openapi_extra=_form_or_json(RevokeRequest),
    tags=["extension sign-in"],
)
async def revoke(issuer: IssuerDep, request: Request) -> dict[str, Any]:
    """RFC 7009: 200 for any token, also unknown ones; revokes descendants.

    Without a ``token`` parameter: 400 ``invalid_request`` (RFC 7009 §2.1, R3).
    """
    params = await _params(request)
    token, hint = params.get("token"), params.get("token_type_hint")
    if not isinstance(token, str) or not token:
        raise BadRequest("token is required")
    oauth.revoke(issuer, token, hint if isinstance(hint, str) else None)
    return {}
