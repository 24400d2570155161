"""``/dashboard/caps``: each seat's spend against its cap; owners and admins set caps (H2).

The page lists the organizations where the signed-in user holds an active
owner or admin seat (``seat_caps_overview``: one row per seat, grouped here
by org), each seat's cap, period, spend
in the current period and what remains. Its forms set a seat's cap or the
org's default through ``set_seat_cap_as`` / ``set_org_default_seat_cap_as``:
the database checks again that the verified user administers that org, so
nothing here decides who may set a cap. CSRF: :class:`~.session.PageOpening`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from issuer.api.deps import IssuerDep, absolute_url
from issuer.api.pages.csrf import csrf_token
from issuer.api.pages.render import PageRoute, page, redirect
from issuer.api.pages.session import PageOpening, who
from issuer.clerk import ClerkSession
from issuer.rpc import RpcError
from issuer.rpc_generated import SeatCapResult, SeatCapsOverviewRow
from issuer.service import Issuer

router = APIRouter(route_class=PageRoute)

PERIODS = ("day", "month", "subscription")
PERIOD_NAMES = {
    "day": "per UTC day",
    "month": "per UTC month",
    "subscription": "per billing period",
}
NOTICES = {
    "saved": "Cap saved. It applies to the next request.",
    "cleared": "Cap removed.",
    "not_an_admin": "Only an active owner or admin of that organization may set its caps.",
}


def _caps_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/dashboard/caps"


def _caps_url(request: Request, _form: FormData | None = None) -> str:
    return absolute_url(request, _caps_path(request))


def _amount(value: Any) -> str:
    if value is None:
        return ""
    return format(Decimal(str(value)).normalize(), "f")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _seat(row: SeatCapsOverviewRow) -> dict[str, Any]:
    cap, spent, remaining = row.cap, row.spent or Decimal(0), row.remaining
    share = None
    if cap is not None and cap > 0:
        share = min(100, int(spent * 100 / cap))
    return {
        "seat_id": str(row.seat_id),
        "who": row.email or row.clerk_user_id,
        "role": row.seat_role,
        "status": row.seat_status,
        "own_cap": _amount(row.own_cap),
        "own_period": row.own_period or "month",
        "cap": _amount(cap),
        "period": PERIOD_NAMES.get(str(row.period), ""),
        "source": row.cap_source,
        "spent": _amount(spent),
        "remaining": _amount(remaining),
        "share": share,
        "reached": cap is not None and remaining is not None and remaining <= 0,
    }


def _orgs(rows: list[SeatCapsOverviewRow]) -> list[dict[str, Any]]:
    """``seat_caps_overview``'s rows (one per seat, in order) grouped by org, in order."""
    orgs: dict[uuid.UUID | None, dict[str, Any]] = {}
    for row in rows:
        org = orgs.get(row.organization_id)
        if org is None:
            org = orgs[row.organization_id] = {
                "organization_id": str(row.organization_id),
                "name": row.organization_name,
                "default_cap": _amount(row.default_cap),
                "default_period": row.default_period or "month",
                "seats": [],
            }
        org["seats"].append(_seat(row))
    return list(orgs.values())


def _caps_page(
    request: Request,
    issuer: Issuer,
    session: ClerkSession,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    rows = issuer.rpc.seat_caps_overview(p_clerk_user_id=session.user_id)
    return page(
        request,
        "caps.html",
        status=status,
        title="Seat caps",
        who=who(session),
        warnings=[],
        notice=notice,
        error=error,
        orgs=_orgs(rows),
        periods=[(p, PERIOD_NAMES[p]) for p in PERIODS],
        csrf=csrf_token(issuer, session),
    )


def _parse_cap(cap: str, period: str) -> tuple[Decimal | None, str | None]:
    """An empty cap means none; else a decimal and one of the periods (the database validates more)."""
    if not cap.strip():
        return None, None
    try:
        value = Decimal(cap.strip())
    except InvalidOperation as exc:
        raise ValueError("The cap must be a number such as 50 or 12.5.") from exc
    if not value.is_finite():
        raise ValueError("The cap must be a finite number.")
    if period not in PERIODS:
        raise ValueError("Choose a period.")
    return value, period


@router.get("/dashboard/caps", response_class=HTMLResponse)
def caps_page(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening())],
    notice: str | None = None,
) -> Response:
    return _caps_page(request, issuer, session, notice=NOTICES.get(notice or ""))


def _store(
    request: Request,
    issuer: Issuer,
    session: ClerkSession,
    set_cap: Callable[[Decimal | None, str | None], SeatCapResult],
    cap: str,
    period: str,
) -> Response:
    try:
        value, chosen = _parse_cap(cap, period)
        result = set_cap(value, chosen)
    except ValueError as exc:
        return _caps_page(request, issuer, session, error=str(exc), status=400)
    except RpcError as exc:
        return _caps_page(request, issuer, session, error=exc.message, status=400)
    if not result.ok:
        reason = result.reason or "not_an_admin"
        return _caps_page(request, issuer, session, error=NOTICES.get(reason, reason), status=403)
    return redirect(
        _caps_path(request) + ("?notice=saved" if value is not None else "?notice=cleared")
    )


@router.post("/dashboard/caps/seat", response_class=HTMLResponse)
def caps_set_seat(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening(form=True, back=_caps_url))],
    seat_id: Annotated[str, Form()] = "",
    cap: Annotated[str, Form()] = "",
    period: Annotated[str, Form()] = "",
) -> Response:
    if not _is_uuid(seat_id):
        return _caps_page(request, issuer, session, error="No such seat.", status=400)

    def set_cap(value: Decimal | None, chosen: str | None) -> SeatCapResult:
        return issuer.rpc.set_seat_cap_as(
            p_clerk_user_id=session.user_id, p_seat_id=seat_id, p_cap=value, p_period=chosen
        )

    return _store(request, issuer, session, set_cap, cap, period)


@router.post("/dashboard/caps/default", response_class=HTMLResponse)
def caps_set_default(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening(form=True, back=_caps_url))],
    organization_id: Annotated[str, Form()] = "",
    cap: Annotated[str, Form()] = "",
    period: Annotated[str, Form()] = "",
) -> Response:
    if not _is_uuid(organization_id):
        return _caps_page(request, issuer, session, error="No such organization.", status=400)

    def set_cap(value: Decimal | None, chosen: str | None) -> SeatCapResult:
        return issuer.rpc.set_org_default_seat_cap_as(
            p_clerk_user_id=session.user_id,
            p_organization_id=organization_id,
            p_cap=value,
            p_period=chosen,
        )

    return _store(request, issuer, session, set_cap, cap, period)
