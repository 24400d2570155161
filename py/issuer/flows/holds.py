"""Holds around work whose cost is known only at the end (issue 20, H1).

``authorize`` reserves an amount on the pool the VERIFIED token names (A4:
the org comes from the token, never from the body; the database re-checks the
seat and the subscription, C3); ``capture`` turns the caller's hold into one
deduction of at most the held amount; ``void`` releases it. Capture and void
name a hold by id and must come from the user who authorized it; the pool is
the one that hold was authorized on.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from issuer.claims import TokenClaims
from issuer.errors import BadRequest
from issuer.flows.usage import MAX_IDEMPOTENCY_KEY, REFUSAL_STATUS
from issuer.rpc_generated import CreditResult, HoldResult
from issuer.service import Issuer

#: The argument's hard range of a hold's lifetime (the database: 22023 outside
#: it). The longest lifetime a hold may have is a bound of the database,
#: ``private.hold_limits.max_ttl`` (default 15 minutes; refused with
#: ``hold_ttl_too_long``, H4), so every client is bounded, not only this route.
MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 3600
DEFAULT_TTL_SECONDS = 300

#: The hold RPCs' refusals → HTTP status, on top of the deduction's map
#: (402 the pool is short, 403 the caller may not spend it): a hold that is
#: not the caller's is answered as one that does not exist (404: nothing is
#: learned about other users' holds); a hold that can no longer be captured
#: or voided is a conflict with its state (409); a capture above the held
#: amount is unprocessable (422). H4's bounds (``private.hold_limits``): too
#: many live holds of this seat is 429 (retry once one is captured, voided or
#: expired); a hold too large or too long is 422 (ask for less).
HOLD_REFUSAL_STATUS = {
    "too_many_holds": 429,
    "hold_too_large": 422,
    "hold_ttl_too_long": 422,
    "hold_not_found": 404,
    "hold_not_yours": 404,
    "hold_already_captured": 409,
    "hold_voided": 409,
    "hold_expired": 409,
    "amount_exceeds_hold": 422,
}

#: What the caller is told for H4's refusals (error_description).
HOLD_BOUND_MESSAGE = {
    "too_many_holds": "this seat already has as many live holds as allowed: "
    "capture or void one, or wait for one to expire",
    "hold_too_large": "larger than one hold may be here now; available says the most allowed",
    "hold_ttl_too_long": "longer than a hold may live here (ask for a shorter ttl_seconds)",
}


def refusal_status(reason: str) -> int:
    """HTTP status of a refusal of any credit or hold RPC (403 when unknown: fail closed)."""
    return HOLD_REFUSAL_STATUS.get(reason) or REFUSAL_STATUS.get(reason, 403)


def public_reason(reason: str) -> str:
    """The error code sent to the caller: hold_not_yours is told as hold_not_found."""
    return "hold_not_found" if reason == "hold_not_yours" else reason


def _check_key(idempotency_key: str | None) -> None:
    if idempotency_key is not None and (
        not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY
    ):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")


def authorize(
    issuer: Issuer,
    claims: TokenClaims,
    *,
    amount: Decimal,
    description: str,
    context: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    ttl_seconds: int | None = None,
) -> HoldResult:
    _check_key(idempotency_key)
    if ttl_seconds is not None and not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        raise BadRequest(
            f"ttl_seconds must be {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} (a hold lives at most an hour)"
        )
    return issuer.rpc.authorize_credits(
        p_clerk_user_id=claims.sub,
        p_amount=amount,
        p_description=description,
        p_clerk_org_id=claims.clerk_org_id if claims.is_org_scoped else None,
        p_idempotency_key=idempotency_key,
        p_context=context or {},
        p_ttl=None if ttl_seconds is None else timedelta(seconds=ttl_seconds),
    )


def capture(
    issuer: Issuer,
    claims: TokenClaims,
    *,
    hold_id: str,
    amount: Decimal,
    context: dict[str, Any] | None = None,
) -> CreditResult:
    return issuer.rpc.capture_credits(
        p_hold_id=hold_id,
        p_clerk_user_id=claims.sub,
        p_amount=amount,
        p_context=context or {},
    )


def void(issuer: Issuer, claims: TokenClaims, *, hold_id: str) -> HoldResult:
    return issuer.rpc.void_hold(p_hold_id=hold_id, p_clerk_user_id=claims.sub)
