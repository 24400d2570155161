"""The reference business endpoint: spend credits with the org from the token.

A plain FastAPI route. Org-pool requests go through the per-pool coalescer
(issuer.coalescing, ``USAGE_COALESCING``); the others make one call.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse

from issuer.api.deps import ClaimsDep
from issuer.api.models import ErrorBody, UsageCharged, UsageRequest
from issuer.coalescing import Coalescer
from issuer.errors import BadRequest
from issuer.flows import usage
from issuer.flows.usage import MAX_IDEMPOTENCY_KEY, REFUSAL_STATUS
from issuer.rpc import BatchDeduction
from issuer.service import Issuer

#: The deduction's threads: the request's one hand-off from the event loop.
#: A plain executor, not Starlette's run_in_threadpool (anyio adds a
#: checkpoint, a capacity limiter and a cancel scope per call). 40 as anyio's
#: default; the database pool's acquire timeout (503 after 5 s) still bounds
#: each call's wait for a connection. A deduction already running when its
#: request is cancelled finishes (its charge is in the ledger, as a retry
#: with the same Idempotency-Key will find); one still queued never starts.
_EXECUTOR = ThreadPoolExecutor(max_workers=40, thread_name_prefix="usage")


def make_coalescer(issuer: Issuer | None) -> Coalescer | None:
    """The app's per-pool queues (``USAGE_COALESCING``, default on), or None.

    None without an issuer, with coalescing off, or with the PostgREST
    backend (no batch call there): then every request makes its own call.
    """
    if issuer is None or not issuer.settings.usage_coalescing or not issuer.rpc.supports_batch:
        return None
    return Coalescer(issuer.rpc, _EXECUTOR)


#: Keys that would name a pool: the pool comes from the verified token only (A4).
_POOL_KEYS = {"clerk_org_id", "organization_id", "org_id", "pool"}


router = APIRouter()


@router.post(
    "/api/extension/usage",
    response_model=UsageCharged,
    responses={
        402: {
            "model": ErrorBody,
            "description": "insufficient_credits (with pool, organization_name)",
        },
        403: {
            "model": ErrorBody,
            "description": "no_active_seat / no_active_subscription / seat_cap_reached "
            "(the seat's cap, not the pool: H2)",
        },
    },
    tags=["usage"],
)
async def record_usage(
    request: Request,
    claims: ClaimsDep,
    body: UsageRequest,
    idempotency_key: Annotated[str | None, Header(max_length=MAX_IDEMPOTENCY_KEY)] = None,
) -> Response:
    """Deduct credits from the pool the token names; a retried Idempotency-Key is charged once."""
    # Async: everything but the deduction runs on the event loop; the
    # deduction (blocking psycopg) is this request's one worker-thread hop.
    issuer: Issuer = request.app.state.issuer
    extra = set(body.model_extra or {}) & _POOL_KEYS
    if extra:
        raise BadRequest(
            f"{sorted(extra)[0]} is not accepted here: the pool comes from the token (A4)"
        )
    amount = usage.parse_amount(body.amount)
    coalescer: Coalescer | None = request.app.state.coalescer
    if coalescer is not None and claims.is_org_scoped and claims.clerk_org_id:
        # Gathered with the pool's other concurrent requests into one batch
        # call; answered once that batch committed (issuer.coalescing).
        usage.check_idempotency_key(idempotency_key)
        result = await coalescer.deduct(
            claims.clerk_org_id,
            BatchDeduction(
                claims.sub, amount, body.description, idempotency_key, body.context or {}
            ),
        )
    else:
        call = functools.partial(
            contextvars.copy_context().run,
            usage.spend,
            issuer,
            claims,
            amount=amount,
            description=body.description,
            context=body.context,
            idempotency_key=idempotency_key,
        )
        result = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, call)
    if not result.ok:
        reason = result.reason or "refused"
        content = usage.refusal_body(reason, result.pool or claims.pool, claims.organization_name)
        return JSONResponse(content, status_code=REFUSAL_STATUS.get(reason, 403))
    # Built here, not by FastAPI's response_model step (declared above for the
    # OpenAPI document): the model still validates the values.
    charged = UsageCharged(
        pool=result.pool or claims.pool,
        remaining=float(result.balance) if result.balance is not None else 0.0,
        transaction_id=None if result.transaction_id is None else str(result.transaction_id),
        replayed=bool(result.replayed),
    )
    return Response(charged.model_dump_json(), media_type="application/json")
