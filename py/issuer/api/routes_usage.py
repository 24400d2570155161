"""The reference business endpoint: spend credits with the org from the token.

The route is declared as usual (its OpenAPI entry, and FastAPI's handler for
every request out of the ordinary), and :class:`UsageRoute` answers the usual
request itself: under load FastAPI's generic handler (dependency solving,
parameter collection, response-model validation) was about a quarter of the
server's CPU per request. Both take the same steps in the same order, so
they answer alike (``tests/test_api_usage.py`` checks both).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from issuer.api.deps import ClaimsDep, our_token
from issuer.api.models import ErrorBody, UsageCharged, UsageRequest
from issuer.claims import TokenClaims
from issuer.errors import BadRequest
from issuer.flows import usage
from issuer.flows.usage import MAX_IDEMPOTENCY_KEY, REFUSAL_STATUS, SEAT_CAP_MESSAGE
from issuer.service import Issuer

#: The deduction's threads: the request's one hand-off from the event loop.
#: A plain executor, not Starlette's run_in_threadpool (anyio adds a
#: checkpoint, a capacity limiter and a cancel scope per call). 40 as anyio's
#: default; the database pool's acquire timeout (503 after 5 s) still bounds
#: each call's wait for a connection. A deduction already running when its
#: request is cancelled finishes (its charge is in the ledger, as a retry
#: with the same Idempotency-Key will find); one still queued never starts.
_EXECUTOR = ThreadPoolExecutor(max_workers=40, thread_name_prefix="usage")

#: Keys that would name a pool: the pool comes from the verified token only (A4).
_POOL_KEYS = {"clerk_org_id", "organization_id", "org_id", "pool"}


class UsageRoute(APIRoute):
    """FastAPI's route, with a direct path for the usual request.

    The usual request has ``Content-Type: application/json`` exactly, a body
    that parses, and, once the bearer token is verified, a body that
    validates as :class:`UsageRequest` and an ``Idempotency-Key`` of at most
    ``MAX_IDEMPOTENCY_KEY`` characters. It takes FastAPI's steps in FastAPI's
    order: parse the JSON body (a parse error is FastAPI's 400 before any
    token check), run :func:`our_token` (its 401), validate the header and
    body, call :func:`record_usage`. Anything else goes to FastAPI's own
    handler, which repeats those steps and gives its answers, error bodies
    included; a request that fails validation after a good token therefore
    has its token checked twice, which is harmless.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        fastapi_handler = super().get_route_handler()

        async def handler(request: Request) -> Response:
            usual = await _usual_request(request)
            if usual is None:
                return await fastapi_handler(request)
            claims, body, idempotency_key = usual
            return await record_usage(request, claims, body, idempotency_key)

        return handler


async def _usual_request(request: Request) -> tuple[TokenClaims, UsageRequest, str | None] | None:
    """The verified claims, body and key of a usual request (:class:`UsageRoute`), else None."""
    if request.headers.get("content-type") != "application/json":
        return None
    try:
        data = json.loads(await request.body())
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    claims = await our_token(request, request.headers.get("authorization"))
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        return None
    try:
        body = UsageRequest.model_validate(data)
    except ValidationError:
        return None
    return claims, body, idempotency_key


router = APIRouter(route_class=UsageRoute)


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
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
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
    call = functools.partial(
        contextvars.copy_context().run,
        usage.spend,
        issuer,
        claims,
        amount=usage.parse_amount(body.amount),
        description=body.description,
        context=body.context,
        idempotency_key=idempotency_key,
    )
    result = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, call)
    if not result.ok:
        reason = result.reason or "refused"
        content: dict[str, Any] = {"error": reason, "pool": result.pool or claims.pool}
        if reason == "insufficient_credits":
            content["organization_name"] = claims.organization_name
        elif reason == "seat_cap_reached":
            content["error_description"] = SEAT_CAP_MESSAGE
        return JSONResponse(content, status_code=REFUSAL_STATUS.get(reason, 403))
    # Built here, not by FastAPI's response_model step (declared above for the
    # OpenAPI document): the model still validates the values.
    charged = UsageCharged(
        pool=result.pool or claims.pool,
        remaining=float(result.balance) if result.balance is not None else 0.0,
        transaction_id=result.transaction_id,
        replayed=result.replayed,
    )
    return Response(charged.model_dump_json(), media_type="application/json")
