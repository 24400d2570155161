"""``/vscode/device`` (RFC 8628 §3.3): the verification page where the user enters a code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from issuer.api.deps import IssuerDep, absolute_url
from issuer.api.pages.csrf import csrf_token
from issuer.api.pages.org_picker import denial_text, org_picker, wanted_org
from issuer.api.pages.render import PageRoute, error_page, page
from issuer.api.pages.session import PageOpening, who
from issuer.clerk import ClerkSession
from issuer.errors import OrgScopeDenied
from issuer.flows import device
from issuer.rpc_generated import DeviceCodePreview
from issuer.service import Issuer

router = APIRouter(route_class=PageRoute)

DEVICE_REFUSALS = {
    "malformed": "That is not a code of 8 letters. Check it and try again.",
    "unknown_code": "That code is not valid. Check it against your VS Code window.",
    "expired": "That code has expired. Start the sign-in again in VS Code.",
    "already_decided": "That code was already used. Start the sign-in again in VS Code.",
    "rate_limited": "Too many wrong codes. Wait a quarter of an hour, then try again.",
}


def _device_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/vscode/device"


def _back_with_the_code(request: Request, form: FormData | None) -> str:
    """After sign-in, back to the page with the code the user typed."""
    code = (form or FormData()).get("user_code")
    user_code = code[:20] if isinstance(code, str) else ""
    return absolute_url(request, request.url.path, urlencode({"user_code": user_code}))


def _device_page(
    request: Request,
    issuer: Issuer,
    session: ClerkSession,
    *,
    user_code: str,
    wanted: str | None = None,
    status: int = 200,
    error: str | None = None,
    requested: dict[str, str] | None = None,
) -> HTMLResponse:
    picker = org_picker(issuer, session)
    selected, warnings = picker.preselect(wanted)
    return page(
        request,
        "device.html",
        status=status,
        title="Sign in a VS Code window",
        who=who(session),
        done=None,
        user_code=user_code[:20],
        choices=picker.choices,
        selected=selected,
        notice=None,
        warnings=warnings,
        error=error,
        requested=requested,
        csrf=csrf_token(issuer, session),
        action=_device_path(request),
    )


def _requested(found: DeviceCodePreview) -> dict[str, str]:
    """Who asked and when, as the page says it (R6, RFC 8628 §5.4: against remote phishing)."""
    made = (found.created_at or datetime.now(UTC)).astimezone(UTC)
    minutes = max(0, int((datetime.now(UTC) - made).total_seconds() // 60))
    ago = "less than a minute ago" if minutes == 0 else f"{minutes} minute(s) ago"
    return {
        "client": found.client_id or "",
        "at": made.isoformat(),
        "when": f"{made:%Y-%m-%d %H:%M} UTC, {ago}",
    }


@router.get("/vscode/device", response_class=HTMLResponse)
def device_page(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening())],
    user_code: str = "",
    clerk_org_id: str | None = None,
) -> Response:
    """RFC 8628 §3.3: the verification page (``verification_uri[_complete]``).

    A prefilled code is previewed: the page names the client and when the
    code was made (R6), or says why the code cannot be used.
    """
    requested = None
    error = None
    status = 200
    if user_code:
        try:
            requested = _requested(device.preview(issuer, session, user_code))
        except device.UserCodeRefused as exc:
            status = 429 if exc.reason == "rate_limited" else 400
            error = DEVICE_REFUSALS.get(exc.reason, DEVICE_REFUSALS["unknown_code"])
    return _device_page(
        request,
        issuer,
        session,
        user_code=user_code,
        wanted=wanted_org(clerk_org_id),
        status=status,
        error=error,
        requested=requested,
    )


@router.post("/vscode/device", response_class=HTMLResponse)
def device_decision(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening(form=True, back=_back_with_the_code))],
    user_code: Annotated[str, Form()] = "",
    clerk_org_id: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
) -> Response:
    """Approve (with the account chosen, seat-gated) or deny the code's device authorization."""
    if decision not in ("approve", "deny"):
        return error_page(
            request, 400, "This request is not valid", "Choose Approve or Deny.", who(session)
        )
    try:
        result = device.decide(
            issuer,
            session,
            user_code=user_code,
            approve=decision == "approve",
            clerk_org_id=clerk_org_id or None,
        )
    except device.UserCodeRefused as exc:
        return _device_page(
            request,
            issuer,
            session,
            user_code=user_code,
            wanted=wanted_org(clerk_org_id),
            status=429 if exc.reason == "rate_limited" else 400,
            error=DEVICE_REFUSALS.get(exc.reason, DEVICE_REFUSALS["unknown_code"]),
        )
    except OrgScopeDenied as exc:
        return _device_page(
            request,
            issuer,
            session,
            user_code=user_code,
            status=403,
            error=f"That organization cannot be used: {denial_text(exc.reason)}. "
            "Choose another account.",
        )
    if result.approved:
        attribution = result.scope.attribution if result.scope else None
        pool = (
            f"the pool of {attribution.organization_name or attribution.clerk_org_id}"
            if attribution
            else "your personal credits"
        )
        done = {
            "title": "VS Code is signed in",
            "message": f"{result.client_id} is signed in and spends {pool}. "
            "You can close this page and return to VS Code.",
        }
    else:
        done = {
            "title": "Sign-in denied",
            "message": "The VS Code window was not signed in. You can close this page.",
        }
    return page(request, "device.html", title=done["title"], who=who(session), done=done)
