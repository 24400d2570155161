"""Holds over HTTP: authorize before a streamed completion, capture or void after (H1).

Same token rules as ``POST /api/extension/usage``: a verified bearer token
(:func:`our_token`), the pool from the token only (A4: a body naming a pool
is refused), the seat and subscription re-checked by the database (C3), an
``Idempotency-Key`` on authorize replays the same hold (409 when reused with
other arguments). Capture and void act on the caller's own holds only.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from issuer.api.deps import ClaimsDep
from issuer.api.models import ErrorBody
from issuer.claims import TokenClaims
from issuer.errors import BadRequest
from issuer.flows import holds, usage
from issuer.service import Issuer

#: The hold RPCs' threads (blocking psycopg), as routes_usage's executor.
_EXECUTOR = ThreadPoolExecutor(max_workers=40, thread_name_prefix="holds")

#: Keys that would name a pool: the pool comes from the verified token only (A4).
_POOL_KEYS = {"clerk_org_id", "organization_id", "org_id", "pool"}

T = TypeVar("T")


class AuthorizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    amount: StrictInt | StrictFloat | StrictStr = Field(
        description="Credits to reserve, > 0: the most the work may cost"
    )
    description: str = Field(max_length=500)
    context: dict[str, Any] | None = None
    ttl_seconds: StrictInt | None = Field(
        default=None,
        description="How long the hold may be captured: 1 to 3600 s, default 300; "
        "above the deployment's bound (default 900): hold_ttl_too_long",
    )


class HoldAuthorized(BaseModel):
    ok: Literal[True] = True
    pool: Literal["organization", "personal"]
    hold_id: str
    amount: float = Field(description="Credits reserved")
    available: float | None = Field(
        description="The pool's available balance (balance minus live holds) after the hold"
    )
    expires_at: datetime = Field(description="After this instant the hold cannot be captured")
    replayed: bool


class CaptureRequest(BaseModel):
    hold_id: UUID
    amount: StrictInt | StrictFloat | StrictStr = Field(
        description="Credits actually spent, > 0 and at most the held amount (void for 0)"
    )
    context: dict[str, Any] | None = None


class HoldCaptured(BaseModel):
    ok: Literal[True] = True
    pool: Literal["organization", "personal"]
    hold_id: str
    amount: float = Field(description="Credits deducted; the rest of the hold is released")
    remaining: float = Field(description="Balance of the pool after the capture")
    transaction_id: str | None
    replayed: bool


class VoidRequest(BaseModel):
    hold_id: UUID


class HoldVoided(BaseModel):
    ok: Literal[True] = True
    pool: Literal["organization", "personal"]
    hold_id: str
    released: float = Field(description="Credits released")
    available: float | None = Field(description="The pool's available balance after the void")
    replayed: bool


router = APIRouter()

_REFUSALS: dict[int | str, dict[str, Any]] = {
    402: {"model": ErrorBody, "description": "insufficient_credits (with pool, organization_name)"},
    403: {"model": ErrorBody, "description": "no_active_seat / no_active_subscription / seat cap"},
    404: {"model": ErrorBody, "description": "hold_not_found (also another user's hold)"},
    409: {
        "model": ErrorBody,
        "description": "hold_already_captured / hold_voided / hold_expired / "
        "idempotency_key_reused",
    },
    422: {
        "model": ErrorBody,
        "description": "amount_exceeds_hold / hold_too_large (available: the largest hold "
        "allowed now) / hold_ttl_too_long",
    },
    429: {"model": ErrorBody, "description": "too_many_holds (live holds of this seat or user)"},
}


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, call)


def _refused(
    reason: str | None, pool: str | None, claims: TokenClaims, available: Decimal | None = None
) -> JSONResponse:
    reason = reason or "refused"
    content = usage.refusal_body(
        holds.public_reason(reason), pool or claims.pool, claims.organization_name
    )
    if reason in holds.HOLD_BOUND_MESSAGE:  # H4
        content["error_description"] = holds.HOLD_BOUND_MESSAGE[reason]
        if reason == "hold_too_large" and available is not None:
            content["available"] = float(available)
    return JSONResponse(content, status_code=holds.refusal_status(reason))


@router.post(
    "/api/extension/usage/authorize",
    response_model=HoldAuthorized,
    responses=_REFUSALS,
    tags=["usage"],
)
async def authorize_usage(
    request: Request,
    claims: ClaimsDep,
    body: AuthorizeRequest,
    idempotency_key: Annotated[str | None, Header(max_length=usage.MAX_IDEMPOTENCY_KEY)] = None,
) -> Response:
    """Reserve credits on the token's pool before the work; capture or void the hold after."""
    issuer: Issuer = request.app.state.issuer
    extra = set(body.model_extra or {}) & _POOL_KEYS
    if extra:
        raise BadRequest(
            f"{sorted(extra)[0]} is not accepted here: the pool comes from the token (A4)"
        )
    result = await _run(
        holds.authorize,
        issuer,
        claims,
        amount=usage.parse_amount(body.amount),
        description=body.description,
        context=body.context,
        idempotency_key=idempotency_key,
        ttl_seconds=body.ttl_seconds,
    )
    if not result.ok:
        return _refused(result.reason, result.pool, claims, result.available)
    assert result.hold_id is not None and result.amount is not None
    assert result.expires_at is not None
    out = HoldAuthorized(
        pool=result.pool or claims.pool,
        hold_id=str(result.hold_id),
        amount=float(result.amount),
        available=None if result.available is None else float(result.available),
        expires_at=result.expires_at,
        replayed=bool(result.replayed),
    )
    return Response(out.model_dump_json(), media_type="application/json")


@router.post(
    "/api/extension/usage/capture",
    response_model=HoldCaptured,
    responses=_REFUSALS,
    tags=["usage"],
)
async def capture_usage(request: Request, claims: ClaimsDep, body: CaptureRequest) -> Response:
    """Deduct what the work cost (at most the hold) and release the rest; a retry replays."""
    issuer: Issuer = request.app.state.issuer
    result = await _run(
        holds.capture,
        issuer,
        claims,
        hold_id=str(body.hold_id),
        amount=usage.parse_amount(body.amount),
        context=body.context,
    )
    if not result.ok:
        return _refused(result.reason, result.pool, claims)
    out = HoldCaptured(
        pool=result.pool or claims.pool,
        hold_id=str(body.hold_id),
        amount=float(result.amount or 0),
        remaining=float(result.balance or 0),
        transaction_id=None if result.transaction_id is None else str(result.transaction_id),
        replayed=bool(result.replayed),
    )
    return Response(out.model_dump_json(), media_type="application/json")


@router.post(
    "/api/extension/usage/void",
    response_model=HoldVoided,
    responses=_REFUSALS,
    tags=["usage"],
)
async def void_usage(request: Request, claims: ClaimsDep, body: VoidRequest) -> Response:
    """Release a hold entirely (the work was cancelled or failed); a repeat replays."""
    issuer: Issuer = request.app.state.issuer
    result = await _run(holds.void, issuer, claims, hold_id=str(body.hold_id))
    if not result.ok:
        return _refused(result.reason, result.pool, claims)
    out = HoldVoided(
        pool=result.pool or claims.pool,
        hold_id=str(body.hold_id),
        released=float(result.amount or 0),
        available=None if result.available is None else float(result.available),
        replayed=bool(result.replayed),
    )
    return Response(out.model_dump_json(), media_type="application/json")
