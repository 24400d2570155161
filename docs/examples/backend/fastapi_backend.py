"""A Python backend that spends credits for callers holding the issuer's tokens.

Run it next to the issuer (same JWT_* variables, and the database the issuer uses):

    DATABASE_URL=postgresql://... JWT_SECRET=... \
        uvicorn --factory fastapi_backend:app_from_env --port 8100

One metered endpoint, POST /summaries, costs SUMMARY_COST credits. The pool
that pays is the one the VERIFIED token names: the org's pool for an org
token, personal credits for a personal token. Nothing in the body can choose
it. Guide: docs/backend-integration.md (this file is executed by
py/tests/test_docs_examples.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from issuer.flows import usage
from issuer.integrations.fastapi import TokenClaimsDep, TokenVerifier, install
from issuer.rpc import Rpc, make_rpc

SUMMARY_COST = Decimal("1.5")

# region: refusals
#: deduct_credits_pooled's refusals (ok = false) → HTTP status: the issuer's own
#: map (402 insufficient_credits; 403 no_active_seat, no_active_subscription,
#: unknown_user, unknown_organization), so every backend answers alike.
REFUSAL_STATUS = usage.REFUSAL_STATUS
# endregion


class SummaryRequest(BaseModel):
    text: str = Field(max_length=10_000)


# region: app
def create_app(verifier: TokenVerifier, rpc: Rpc, *, close_rpc: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_rpc:
            rpc.close()  # the connection pool, at shutdown

    app = FastAPI(title="Summaries", lifespan=lifespan)
    # require_token uses this verifier; issuer errors become JSON responses:
    # 401 invalid_token, 409 idempotency_key_reused, 400 invalid_request, 503 + Retry-After.
    install(app, verifier)

    @app.post("/summaries")
    def summarize(
        body: SummaryRequest,
        claims: TokenClaimsDep,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Any:
        result = rpc.deduct_credits_pooled(
            p_clerk_user_id=claims.sub,
            p_amount=SUMMARY_COST,
            p_description="summary",
            # The org comes from the verified token, never from the body.
            p_clerk_org_id=claims.clerk_org_id if claims.pool == "organization" else None,
            p_idempotency_key=idempotency_key,
            p_context={"chars": len(body.text)},
        )
        if not result.ok:
            reason = result.reason or "refused"
            content: dict[str, Any] = {"error": reason, "pool": result.pool}
            if reason == "insufficient_credits":
                content["organization_name"] = claims.organization_name
            return JSONResponse(content, status_code=REFUSAL_STATUS.get(reason, 403))
        return {
            "summary": body.text[:40],
            "pool": result.pool,
            "charged": str(result.amount),
            "remaining": str(result.balance),
            "replayed": result.replayed,
        }

    return app


# endregion


# region: from-env
def app_from_env() -> FastAPI:
    """``uvicorn --factory``: DATABASE_URL (or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY)
    for the credit RPCs, the issuer's JWT_* variables for verification."""
    rpc = make_rpc(
        database_url=os.environ.get("DATABASE_URL"),
        supabase_url=os.environ.get("SUPABASE_URL"),
        service_role_key=os.environ.get("SUPABASE_SERVICE_ROLE_KEY"),
    )
    # Passing rpc also accepts long-lived extension tokens (checked for revocation).
    return create_app(TokenVerifier.from_env(rpc=rpc), rpc, close_rpc=True)


# endregion
