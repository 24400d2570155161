"""``/dashboard/tokens``: the user's long-lived extension tokens; generate (shown once) and revoke."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from issuer.api.deps import IssuerDep, absolute_url
from issuer.api.pages.csrf import csrf_token
from issuer.api.pages.org_picker import denial_text, org_picker, wanted_org
from issuer.api.pages.render import PageRoute, page, redirect
from issuer.api.pages.sealed_cookie import (
    NEW_TOKEN_COOKIE,
    NEW_TOKEN_COOKIE_PATH,
    NEW_TOKEN_COOKIE_SECONDS,
    seal,
    unseal,
)
from issuer.api.pages.session import PageOpening, who
from issuer.clerk import ClerkSession
from issuer.errors import BadRequest, NotFound, OrgScopeDenied
from issuer.flows import extension_tokens
from issuer.rpc_generated import ListExtensionTokensRow
from issuer.service import Issuer

router = APIRouter(route_class=PageRoute)

EXPIRY_CHOICES_DAYS = (7, 30, 90, 365)
NOTICES = {
    "revoked": "Token revoked. It stops working at once.",
    "already_revoked": "That token was already revoked or does not exist.",
}


def _tokens_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/dashboard/tokens"


def _tokens_url(request: Request, _form: FormData | None = None) -> str:
    """Absolute, for the sign-in page's ``redirect_url``."""
    return absolute_url(request, _tokens_path(request))


def _when(value: datetime | None) -> tuple[str, str] | None:
    """(machine, human) forms of a timestamp from the database, or None."""
    if value is None:
        return None
    moment = value.astimezone(UTC)
    return moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M UTC")


def _token_rows(
    tokens: list[ListExtensionTokensRow], names: dict[str, str], new_id: str | None
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for token in tokens:
        org = token.clerk_org_id
        if token.revoked_at is not None:
            status = "revoked"
        elif token.expires_at is not None and token.expires_at <= now:
            status = "expired"
        else:
            status = "active"
        rows.append(
            {
                "id": str(token.id),
                "name": token.name or "",
                "scope": names.get(org, org) if org else "Personal",
                "created": _when(token.created_at),
                "last_used": _when(token.last_used_at),
                "expires": _when(token.expires_at),
                "status": status,
                "new": str(token.id) == new_id,
            }
        )
    return rows


def _tokens_page(
    request: Request,
    issuer: Issuer,
    session: ClerkSession,
    *,
    wanted: str | None = None,
    new_token: dict[str, Any] | None = None,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    picker = org_picker(issuer, session)
    selected, warnings = picker.preselect(wanted)
    tokens = extension_tokens.list_tokens(issuer, session)
    # L4: the page offers only lifetimes within the configured maximum.
    limit = extension_tokens.max_days(issuer)
    default_days = max(1, min(issuer.settings.extension_token_ttl // 86_400, limit))
    return page(
        request,
        "tokens.html",
        status=status,
        script=new_token is not None,
        title="Extension tokens",
        who=who(session),
        choices=picker.choices,
        selected=selected,
        warnings=warnings,
        notice=notice,
        error=error,
        tokens=_token_rows(tokens, picker.names, (new_token or {}).get("token_id")),
        new_token=new_token,
        csrf=csrf_token(issuer, session),
        default_days=default_days,
        expiry_choices=[d for d in EXPIRY_CHOICES_DAYS if d <= limit],
        form=form or {"name": "VS Code", "expires_in_days": ""},
    )


@router.get("/dashboard/tokens", response_class=HTMLResponse)
def tokens_page(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening())],
    clerk_org_id: str | None = None,
    notice: str | None = None,
) -> Response:
    sealed = request.cookies.get(NEW_TOKEN_COOKIE)
    new_token = unseal(issuer, session, sealed) if sealed else None
    response = _tokens_page(
        request,
        issuer,
        session,
        wanted=wanted_org(clerk_org_id),
        new_token=new_token,
        notice=NOTICES.get(notice or ""),
    )
    if sealed:
        response.delete_cookie(NEW_TOKEN_COOKIE, path=NEW_TOKEN_COOKIE_PATH, httponly=True)
    return response


@router.post("/dashboard/tokens/generate", response_class=HTMLResponse)
def tokens_generate(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening(form=True, back=_tokens_url))],
    name: Annotated[str, Form()] = "",
    clerk_org_id: Annotated[str, Form()] = "",
    expires_in_days: Annotated[str, Form()] = "",
) -> Response:
    form = {"name": name, "expires_in_days": expires_in_days}
    try:
        days = int(expires_in_days) if expires_in_days else None
        issued = extension_tokens.generate(
            issuer,
            session,
            name=name,
            clerk_org_id=clerk_org_id or None,
            expires_in_days=days,
            require_org=bool(clerk_org_id),
        )
    except ValueError:
        return _tokens_page(
            request, issuer, session, error="Choose an expiry.", status=400, form=form
        )
    except BadRequest as exc:
        return _tokens_page(
            request,
            issuer,
            session,
            error=exc.message,
            status=400,
            form=form,
            wanted=clerk_org_id or None,
        )
    except OrgScopeDenied as exc:
        return _tokens_page(
            request,
            issuer,
            session,
            error=f"No token was created: {denial_text(exc.reason)}.",
            status=403,
            form=form,
        )
    keep_org = "?" + urlencode({"clerk_org_id": clerk_org_id}) if clerk_org_id else ""
    response = redirect(_tokens_path(request) + keep_org)
    response.set_cookie(
        NEW_TOKEN_COOKIE,
        seal(
            issuer,
            session,
            {
                "token": issued.minted.token,
                "token_id": issued.token_id,
                "name": name.strip() or "VS Code",
            },
        ),
        max_age=NEW_TOKEN_COOKIE_SECONDS,
        path=NEW_TOKEN_COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/dashboard/tokens/revoke", response_class=HTMLResponse)
def tokens_revoke(
    request: Request,
    issuer: IssuerDep,
    session: Annotated[ClerkSession, Depends(PageOpening(form=True, back=_tokens_url))],
    token_id: Annotated[str, Form()] = "",
) -> Response:
    try:
        extension_tokens.revoke(issuer, session, token_id)
    except NotFound:
        return redirect(_tokens_path(request) + "?notice=already_revoked")
    return redirect(_tokens_path(request) + "?notice=revoked")
