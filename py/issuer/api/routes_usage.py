"""The reference business endpoint: spend credits with the org from the token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from issuer.api.deps import ClaimsDep, IssuerDep
from issuer.api.models import ErrorBody, UsageCharged, UsageRequest
from issuer.errors import BadRequest
from issuer.flows import usage
from issuer.flows.usage import REFUSAL_STATUS

router = APIRouter()

#: Keys that would name a pool: the pool comes from the verified token only (A4).
_POOL_KEYS = {"clerk_org_id", "organization_id", "org_id", "pool"}


@router.post(
    "/api/extension/usage",
    response_model=UsageCharged,
    responses={
        402: {
            "model": ErrorBody,
            "description": "insufficient_credits (with pool, organization_name)",
        },
        403: {"model": ErrorBody, "description": "no_active_seat / no_active_subscription"},
    },
    tags=["usage"],
)
async def record_usage(
    issuer: IssuerDep,
    claims: ClaimsDep,
    body: UsageRequest,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Deduct credits from the pool the token names; a retried Idempotency-Key is charged once."""
    # Async: everything but the deduction runs on the event loop; the
    # deduction (blocking psycopg) is this request's one worker-thread hop.
    extra = set(body.model_extra or {}) & _POOL_KEYS
    if extra:
        raise BadRequest(
            f"{sorted(extra)[0]} is not accepted here: the pool comes from the token (A4)"
        )
    result = await run_in_threadpool(
        usage.spend,
        issuer,
        claims,
        amount=usage.parse_amount(body.amount),
        description=body.description,
        context=body.context,
        idempotency_key=idempotency_key,
    )
    if not result.ok:
        reason = result.reason or "refused"
        content: dict[str, Any] = {"error": reason, "pool": result.pool or claims.pool}
        if reason == "insufficient_credits":
            content["organization_name"] = claims.organization_name
        return JSONResponse(content, status_code=REFUSAL_STATUS.get(reason, 403))
    return {
        "ok": True,
        "pool": result.pool or claims.pool,
        "remaining": float(result.balance) if result.balance is not None else 0.0,
        "transaction_id": result.transaction_id,
        "replayed": result.replayed,
    }
