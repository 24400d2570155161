"""The metered business endpoint's deduction.

The pool is decided by the VERIFIED token only (A4): an org token spends the
org's pool (the database re-checks the seat and the subscription at this
moment, C3), a personal token spends personal credits. Nothing in the request
body can name an org.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from issuer.amounts import InvalidAmount, parse_decimal
from issuer.claims import TokenClaims
from issuer.errors import BadRequest
from issuer.rpc import CreditResult
from issuer.service import Issuer

MAX_IDEMPOTENCY_KEY = 200

#: deduct_credits_pooled's refusals (ok = false) → HTTP status: 402 when the
#: pool is short, 403 when the caller may not spend it (also when their seat
#: reached its cap: the pool is not short, H2). The API and the backend
#: examples answer with this one map.
REFUSAL_STATUS = {
    "insufficient_credits": 402,
    "seat_cap_reached": 403,
    "no_active_seat": 403,
    "no_active_subscription": 403,
    "unknown_user": 403,
    "unknown_organization": 403,
    "account_closed": 403,  # L10: a personal deduction by a user deleted in Clerk
}
#: The message of seat_cap_reached: the pool is not short, this seat's cap is
#: (its org's owners/admins set it; H2). Same text on /usage and the hold routes.
SEAT_CAP_MESSAGE = (
    "the pool is not short: this seat reached the spending cap its organization set "
    "for the current period"
)


def refusal_body(error: str, pool: str, organization_name: str | None) -> dict[str, Any]:
    """The JSON body of a refused credit request (``/usage`` and the hold routes alike)."""
    body: dict[str, Any] = {"error": error, "pool": pool}
    if error == "insufficient_credits":
        body["organization_name"] = organization_name
    elif error == "seat_cap_reached":
        body["error_description"] = SEAT_CAP_MESSAGE
    return body


def parse_amount(value: Any) -> Decimal:
    """Accept a JSON number or a decimal string (issuer.amounts, F5); the database validates the rest."""
    if isinstance(value, bool) or value is None:
        raise BadRequest("amount must be a number")
    if isinstance(value, float):
        # repr: the shortest round-trip text; 1e-05 or 1e+16 spell an exponent
        # and are refused (more than 4 decimals, or past the bound, anyway).
        value = repr(value)
    try:
        return parse_decimal(str(value))
    except InvalidAmount as exc:
        raise BadRequest(str(exc)) from None


def check_idempotency_key(idempotency_key: str | None) -> None:
    """1 to MAX_IDEMPOTENCY_KEY characters, or none (400 otherwise)."""
    if idempotency_key is not None and (
        not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY
    ):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")


def spend(
    issuer: Issuer,
    claims: TokenClaims,
    *,
    amount: Decimal,
    description: str,
    context: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> CreditResult:
    check_idempotency_key(idempotency_key)
    # The context goes in unchanged: adding per-token values (jti) would make a
    # retry with a refreshed token look like "same key, other arguments".
    return issuer.rpc.deduct_credits_pooled(
        p_clerk_user_id=claims.sub,
        p_amount=amount,
        p_description=description,
        p_clerk_org_id=claims.clerk_org_id if claims.is_org_scoped else None,
        p_idempotency_key=idempotency_key,
        p_context=context or {},
    )
