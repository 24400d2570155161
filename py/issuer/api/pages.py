"""The issuer's two HTML pages: the VS Code authorization page and the token dashboard.

* ``GET /vscode/authorize``: the page the extension opens with its PKCE
  parameters. The signed-in user picks the account usage is billed to
  (Personal, or an organization where their seat is active) and approves
  or denies; both answers are 303 redirects to the registered
  ``redirect_uri``. An unknown client or unregistered ``redirect_uri`` is an
  error page, never a redirect.
* ``GET /dashboard/tokens``: the user's long-lived extension tokens (never
  the token itself), generate (the new token is shown once) and revoke.

Server-rendered (Jinja2), usable without JavaScript: every form posts to the
server, which answers with a 303 or a page. Who is signed in comes from the
Clerk session token, read as Clerk-backed servers read it (an
``Authorization: Bearer`` header, else the ``__session`` cookie) and verified
against Clerk's JWKS; without one the visitor is sent to ``CLERK_SIGN_IN_URL``
with a ``redirect_url`` back here.

Every form carries a CSRF token bound to the Clerk session id (an HMAC under a
key derived from ``JWT_SECRET``); a POST from another site (``Origin`` /
``Sec-Fetch-Site``) or without a valid token gets a 403 page. Pages send a
strict Content-Security-Policy (no inline script or style), ``frame-ancestors
'none'`` and ``X-Frame-Options: DENY``.

A new token reaches the page after the generate POST's 303 in a short-lived
cookie, encrypted (AES-GCM, bound to the session id) and deleted by the page
that shows it, so a reload does not show it again and no server-side store
is needed (any number of workers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import jinja2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from issuer.api.deps import IssuerDep, public_issuer
from issuer.clerk import ClerkSession
from issuer.errors import (
    BadRequest,
    ClerkUnavailable,
    DatabaseUnavailable,
    InvalidToken,
    IssuerError,
    NotFound,
    OrgScopeDenied,
)
from issuer.flows import device, extension_tokens, oauth
from issuer.flows.oauth import _CHALLENGE as CHALLENGE_PATTERN
from issuer.flows.scope import check_org_id
from issuer.service import Issuer

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "__session"
"""The cookie Clerk's frontend keeps the short-lived session token in."""
NEW_TOKEN_COOKIE = "issuer_new_token"
NEW_TOKEN_COOKIE_PATH = "/dashboard/tokens"
NEW_TOKEN_COOKIE_SECONDS = 120
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE_SECONDS = 12 * 3600
EXPIRY_CHOICES_DAYS = (7, 30, 90, 365)

SEAT_REASONS = {
    "suspended": "Seat suspended",
    "pending": "Seat pending: not activated yet",
    "revoked": "Seat revoked",
}
DENIAL_TEXT = {
    "not_a_member": "you are not a member of that organization",
    "no_active_seat": "you do not hold an active seat in that organization",
    "clerk_unavailable": "your memberships could not be checked with Clerk right now",
}
NOTICES = {
    "revoked": "Token revoked. It stops working at once.",
    "already_revoked": "That token was already revoked or does not exist.",
}
STATIC_FILES = {
    "issuer.css": "text/css; charset=utf-8",
    "copy.js": "text/javascript; charset=utf-8",
}


# -- rendering -------------------------------------------------------------------


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("issuer", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _static(name: str) -> bytes:
    return resources.files("issuer").joinpath("static", name).read_bytes()


def _csp_source(uri: str) -> str:
    """The CSP source expression for where ``uri`` points (origin, or ``scheme:``)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return f"{parts.scheme}:"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def page_headers(*, form_targets: tuple[str, ...] = (), script: bool = False) -> dict[str, str]:
    """Security headers of every page.

    ``form_targets`` are the redirect targets of this page's forms: Chromium
    applies ``form-action`` to the redirects that follow a form submission,
    so the authorization page names the (validated) ``redirect_uri``.
    """
    csp = [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action " + " ".join(("'self'", *form_targets)),
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
    if script:
        csp.append("script-src 'self'")
    return {
        "Content-Security-Policy": "; ".join(csp),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        # Same-origin posts then carry a real Origin header (no-referrer sends "null").
        "Referrer-Policy": "same-origin",
    }


def _page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    form_targets: tuple[str, ...] = (),
    script: bool = False,
    **context: Any,
) -> HTMLResponse:
    issuer: Issuer | None = request.app.state.issuer
    context.setdefault("who", None)
    base = str(request.scope.get("root_path", ""))
    page = _templates().get_template(template)
    html = page.render(
        base=base,
        static=base + "/static",
        brand=issuer.settings.jwt_issuer if issuer else "Issuer",
        **context,
    )
    return HTMLResponse(
        html, status_code=status, headers=page_headers(form_targets=form_targets, script=script)
    )


def error_page(
    request: Request, status: int, title: str, message: str, who: str | None = None
) -> HTMLResponse:
    return _page(request, "error.html", status=status, title=title, message=message, who=who)


def _issuer_error_page(request: Request, exc: IssuerError, who: str | None) -> HTMLResponse:
    if isinstance(exc, ClerkUnavailable | DatabaseUnavailable):
        response = error_page(
            request,
            503,
            "Temporarily unavailable",
            "A service this page depends on did not answer. Please try again in a moment.",
            who,
        )
        response.headers["Retry-After"] = "1"
        return response
    if isinstance(exc, BadRequest):
        return error_page(request, 400, "This request is not valid", exc.message, who)
    return error_page(request, exc.status, "Something went wrong", exc.message, who)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(
        url,
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


# -- who is signed in ------------------------------------------------------------


def read_session(issuer: Issuer, request: Request) -> ClerkSession | None:
    """The verified Clerk session (bearer header first, then ``__session``), or None.

    An invalid or expired token counts as no session (the visitor signs in
    again); Clerk being unreachable is not hidden (``ClerkUnavailable``).
    """
    token: str | None = None
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        token = value.strip()
    if token is None:
        token = request.cookies.get(SESSION_COOKIE) or None
    if token is None:
        return None
    try:
        return issuer.sessions.verify(token)
    except InvalidToken as exc:
        log.info("page session refused: %s", exc.reason)
        return None


def _who(session: ClerkSession) -> str:
    return session.email or session.user_id


def _sign_in(request: Request, issuer: Issuer, back: str) -> Response:
    url = issuer.settings.clerk_sign_in_url
    if not url:
        return error_page(
            request,
            401,
            "Sign-in required",
            "Sign in to your account in this browser, then open this page again.",
        )
    separator = "&" if urlsplit(url).query else "?"
    return _redirect(url + separator + urlencode({"redirect_url": back}))


# -- CSRF ------------------------------------------------------------------------


def _derived_key(issuer: Issuer, purpose: bytes) -> bytes:
    secret = issuer.settings.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, b"issuer pages: " + purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _csrf_mac(issuer: Issuer, session_id: str, issued: str, nonce: str) -> str:
    message = f"{session_id}|{issued}|{nonce}".encode()
    return _b64(hmac.new(_derived_key(issuer, b"csrf v1"), message, hashlib.sha256).digest())


def csrf_token(issuer: Issuer, session: ClerkSession, *, now: float | None = None) -> str:
    """``issued.nonce.mac``: valid for this Clerk session for ``CSRF_MAX_AGE_SECONDS``."""
    issued = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(12)
    return f"{issued}.{nonce}.{_csrf_mac(issuer, session.session_id, issued, nonce)}"


def csrf_valid(
    issuer: Issuer, session: ClerkSession, token: str, *, now: float | None = None
) -> bool:
    parts = token.split(".") if 0 < len(token) <= 200 else []
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    issued, nonce, mac = parts
    age = (time.time() if now is None else now) - int(issued)
    if not -60 <= age <= CSRF_MAX_AGE_SECONDS:
        return False
    return hmac.compare_digest(mac, _csrf_mac(issuer, session.session_id, issued, nonce))


def _cross_site(request: Request) -> bool:
    """A browser says this POST comes from another site (checked before the token)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return origin == "null" or urlsplit(origin).netloc not in hosts - {None}


def _csrf_refused(request: Request, issuer: Issuer, session: ClerkSession, token: str) -> bool:
    return _cross_site(request) or not csrf_valid(issuer, session, token)


def _forbidden(request: Request, session: ClerkSession) -> HTMLResponse:
    return error_page(
        request,
        403,
        "Request refused",
        "This form was not sent from this site or has expired. "
        "Go back, reload the page and try again.",
        _who(session),
    )


# -- organizations ---------------------------------------------------------------


@dataclass(frozen=True)
class OrgChoice:
    """One entry of the org picker: ``value`` is the clerk_org_id ("" = Personal)."""

    value: str
    name: str
    detail: str
    selectable: bool
    reason: str | None = None


PERSONAL = OrgChoice("", "Personal", "your own credits", True)


@dataclass(frozen=True)
class OrgPicker:
    choices: list[OrgChoice]
    warning: str | None
    names: dict[str, str]
    """Organization names by clerk_org_id, also of orgs the user has left (token list)."""


def org_picker(issuer: Issuer, session: ClerkSession) -> OrgPicker:
    """Personal, then the user's Clerk organizations with their seats.

    Membership comes from Clerk; the seat, and whether it may be used, from
    the database (``seat_overview``). When Clerk cannot answer only Personal
    is offered, with a warning (fail closed).
    """
    rows = issuer.rpc.call("seat_overview", p_clerk_user_id=session.user_id) or []
    seats = {str(row["clerk_org_id"]): row for row in rows if isinstance(row, dict)}
    names = {org: str(row.get("organization_name") or org) for org, row in seats.items()}
    try:
        memberships = issuer.clerk.list_memberships(session.user_id)
    except ClerkUnavailable:
        warning = (
            "Your organizations could not be loaded from Clerk right now, so only "
            "Personal is offered. Try again in a moment to use an organization."
        )
        return OrgPicker([PERSONAL], warning, names)
    orgs: list[OrgChoice] = []
    for membership in memberships:
        seat = seats.get(membership.org_id)
        name = names.get(membership.org_id) or membership.org_name or membership.org_id
        names[membership.org_id] = name
        role = (membership.role or "").removeprefix("org:")
        detail = f"organization pool · {role}" if role else "organization pool"
        if seat is None:
            orgs.append(OrgChoice(membership.org_id, name, detail, False, "No seat"))
        elif seat.get("selectable") is True:
            orgs.append(OrgChoice(membership.org_id, name, detail, True))
        else:
            status = str(seat.get("seat_status"))
            reason = SEAT_REASONS.get(status, f"Seat {status}")
            orgs.append(OrgChoice(membership.org_id, name, detail, False, reason))
    orgs.sort(key=lambda c: (c.name.casefold(), c.value))
    return OrgPicker([PERSONAL, *orgs], None, names)


def _preselect(choices: list[OrgChoice], wanted: str | None) -> tuple[str, str | None]:
    """The org to check initially and, if the wanted one cannot be used, why."""
    if not wanted:
        return "", None
    for choice in choices:
        if choice.value == wanted:
            if choice.selectable:
                return wanted, None
            return "", f"{choice.name} cannot be used: {(choice.reason or '').lower()}."
    return "", "You are not a member of the requested organization; Personal is selected."


def _wanted_org(raw: str | None) -> str | None:
    try:
        return check_org_id(raw)
    except BadRequest:
        return None


# -- /vscode/authorize -------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizeParams:
    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str
    code_challenge_method: str
    response_type: str = "code"

    def as_query(self, clerk_org_id: str | None = None) -> dict[str, str]:
        query = {
            "response_type": self.response_type,
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
            "code_challenge": self.code_challenge,
            "code_challenge_method": self.code_challenge_method,
        }
        if clerk_org_id:
            query["clerk_org_id"] = clerk_org_id
        return query

    def problem(self) -> tuple[str, str] | None:
        """(error, description) for the response type and PKCE parameters, or None.

        The client and redirect URI are checked before (an error page, never a
        redirect). RFC 6749 §4.1.2.1: a missing ``response_type`` is
        ``invalid_request``, another value ``unsupported_response_type`` (R3).
        """
        if not self.response_type:
            return "invalid_request", "response_type is required (response_type=code)"
        if self.response_type != "code":
            return "unsupported_response_type", "only response_type=code is supported"
        if self.code_challenge_method != "S256":
            return "invalid_request", "code_challenge_method must be S256"
        if not CHALLENGE_PATTERN.match(self.code_challenge):
            return "invalid_request", "code_challenge must be 43 base64url characters (S256)"
        if not self.state or len(self.state) > oauth.MAX_STATE:
            return "invalid_request", f"state must be 1 to {oauth.MAX_STATE} characters"
        return None


def _authorization_error(
    request: Request, params: AuthorizeParams, error: str, **more: str
) -> Response:
    """An error answer to the registered client: ``error``, ``state`` and ``iss`` (RFC 9207)."""
    answer = {"error": error, **more}
    if params.state and len(params.state) <= oauth.MAX_STATE:
        answer["state"] = params.state
    answer["iss"] = public_issuer(request)
    return _redirect(oauth.redirect_with(params.redirect_uri, answer))


def _client_error(request: Request, issuer: Issuer, params: AuthorizeParams) -> Response | None:
    """An error page for an unknown client or unregistered redirect URI (never a redirect)."""
    try:
        oauth.check_client(issuer, params.client_id, params.redirect_uri)
    except BadRequest as exc:
        return error_page(
            request,
            400,
            "This sign-in link is not valid",
            f"{exc.message}. Start the sign-in again from the extension.",
        )
    return None


def _authorize_page(
    request: Request,
    issuer: Issuer,
    session: ClerkSession,
    params: AuthorizeParams,
    *,
    wanted: str | None,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    picker = org_picker(issuer, session)
    selected, unusable = _preselect(picker.choices, wanted)
    target = urlsplit(params.redirect_uri)
    return _page(
        request,
        "authorize.html",
        status=status,
        form_targets=(_csp_source(params.redirect_uri),),
        title="Authorize the extension",
        who=_who(session),
        params=params,
        return_to=target.netloc or f"{target.scheme}:",
        choices=picker.choices,
        selected=selected,
        notice=None,
        warnings=[w for w in (picker.warning, unusable) if w],
        error=error,
        csrf=csrf_token(issuer, session),
        action=request.url.path,
    )


@router.get("/vscode/authorize", response_class=HTMLResponse)
def authorize_page(
    request: Request,
    issuer: IssuerDep,
    response_type: str = "",
    client_id: str = "",
    redirect_uri: str = "",
    state: str = "",
    code_challenge: str = "",
    code_challenge_method: str = "",
    clerk_org_id: str | None = None,
) -> Response:
    params = AuthorizeParams(
        client_id, redirect_uri, state, code_challenge, code_challenge_method, response_type
    )
    if (refused := _client_error(request, issuer, params)) is not None:
        return refused
    if (problem := params.problem()) is not None:
        # The client and redirect URI are registered: tell the extension (RFC 6749 §4.1.2.1).
        error, description = problem
        return _authorization_error(request, params, error, error_description=description)
    try:
        session = read_session(issuer, request)
        if session is None:
            return _sign_in(request, issuer, str(request.url))
        return _authorize_page(request, issuer, session, params, wanted=_wanted_org(clerk_org_id))
    except IssuerError as exc:
        return _issuer_error_page(request, exc, None)


@router.post("/vscode/authorize", response_class=HTMLResponse)
def authorize_decision(
    request: Request,
    issuer: IssuerDep,
    client_id: Annotated[str, Form()] = "",
    redirect_uri: Annotated[str, Form()] = "",
    state: Annotated[str, Form()] = "",
    code_challenge: Annotated[str, Form()] = "",
    code_challenge_method: Annotated[str, Form()] = "",
    clerk_org_id: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    # The response type was checked by the GET that rendered this form.
    params = AuthorizeParams(
        client_id, redirect_uri, state, code_challenge, code_challenge_method, "code"
    )
    if (refused := _client_error(request, issuer, params)) is not None:
        return refused
    who: str | None = None
    try:
        session = read_session(issuer, request)
        if session is None:
            back = request.url.replace(query=urlencode(params.as_query(clerk_org_id or None)))
            return _sign_in(request, issuer, str(back))
        who = _who(session)
        if _csrf_refused(request, issuer, session, csrf_token):
            return _forbidden(request, session)
        if decision == "deny":
            return _authorization_error(request, params, "access_denied")
        if decision != "approve":
            return error_page(
                request, 400, "This request is not valid", "Choose Approve or Deny.", who
            )
        try:
            result = oauth.complete_vscode_auth(
                issuer,
                session,
                client_id=client_id,
                redirect_uri=redirect_uri,
                state=state,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                clerk_org_id=clerk_org_id or None,
                require_org=bool(clerk_org_id),
                iss=public_issuer(request),
            )
        except OrgScopeDenied as exc:
            reason = DENIAL_TEXT.get(exc.reason, exc.reason)
            return _authorize_page(
                request,
                issuer,
                session,
                params,
                wanted=None,
                status=403,
                error=f"That organization cannot be used: {reason}. Choose another account.",
            )
        return _redirect(result.redirect_to)
    except IssuerError as exc:
        return _issuer_error_page(request, exc, who)


# -- /vscode/device (RFC 8628) ------------------------------------------------------

DEVICE_REFUSALS = {
    "malformed": "That is not a code of 8 letters. Check it and try again.",
    "unknown_code": "That code is not valid. Check it against your VS Code window.",
    "expired": "That code has expired. Start the sign-in again in VS Code.",
    "already_decided": "That code was already used. Start the sign-in again in VS Code.",
    "rate_limited": "Too many wrong codes. Wait a quarter of an hour, then try again.",
}


def _device_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/vscode/device"


def _device_page(
    request: Request,
    issuer: Issuer,
    session: ClerkSession,
    *,
    user_code: str,
    wanted: str | None = None,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    picker = org_picker(issuer, session)
    selected, unusable = _preselect(picker.choices, wanted)
    return _page(
        request,
        "device.html",
        status=status,
        title="Sign in a VS Code window",
        who=_who(session),
        done=None,
        user_code=user_code[:20],
        choices=picker.choices,
        selected=selected,
        notice=None,
        warnings=[w for w in (picker.warning, unusable) if w],
        error=error,
        csrf=csrf_token(issuer, session),
        action=_device_path(request),
    )


@router.get("/vscode/device", response_class=HTMLResponse)
def device_page(
    request: Request,
    issuer: IssuerDep,
    user_code: str = "",
    clerk_org_id: str | None = None,
) -> Response:
    """RFC 8628 §3.3: the verification page (``verification_uri[_complete]``)."""
    try:
        session = read_session(issuer, request)
        if session is None:
            return _sign_in(request, issuer, str(request.url))
        return _device_page(
            request, issuer, session, user_code=user_code, wanted=_wanted_org(clerk_org_id)
        )
    except IssuerError as exc:
        return _issuer_error_page(request, exc, None)


@router.post("/vscode/device", response_class=HTMLResponse)
def device_decision(
    request: Request,
    issuer: IssuerDep,
    user_code: Annotated[str, Form()] = "",
    clerk_org_id: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Approve (with the account chosen, seat-gated) or deny the code's device authorization."""
    who: str | None = None
    try:
        session = read_session(issuer, request)
        if session is None:
            back = request.url.replace(query=urlencode({"user_code": user_code[:20]}))
            return _sign_in(request, issuer, str(back))
        who = _who(session)
        if _csrf_refused(request, issuer, session, csrf_token):
            return _forbidden(request, session)
        if decision not in ("approve", "deny"):
            return error_page(
                request, 400, "This request is not valid", "Choose Approve or Deny.", who
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
                wanted=_wanted_org(clerk_org_id),
                status=429 if exc.reason == "rate_limited" else 400,
                error=DEVICE_REFUSALS.get(exc.reason, DEVICE_REFUSALS["unknown_code"]),
            )
        except OrgScopeDenied as exc:
            reason = DENIAL_TEXT.get(exc.reason, exc.reason)
            return _device_page(
                request,
                issuer,
                session,
                user_code=user_code,
                status=403,
                error=f"That organization cannot be used: {reason}. Choose another account.",
            )
    except IssuerError as exc:
        return _issuer_error_page(request, exc, who)
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
    return _page(request, "device.html", title=done["title"], who=who, done=done)


# -- /dashboard/tokens -------------------------------------------------------------


def _tokens_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/dashboard/tokens"


def _tokens_url(request: Request) -> str:
    """Absolute, for the sign-in page's ``redirect_url``."""
    return str(request.url.replace(path=_tokens_path(request), query=""))


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC) if value else None
    except ValueError:
        return None


def _when(value: Any) -> tuple[str, str] | None:
    """(machine, human) forms of a timestamp from the database, or None."""
    moment = _moment(value)
    if moment is None:
        return None
    return moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M UTC")


def _token_rows(
    tokens: list[dict[str, Any]], names: dict[str, str], new_id: str | None
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for token in tokens:
        org = token.get("clerk_org_id")
        expires = token.get("expires_at")
        expires_at = _moment(expires)
        if token.get("revoked_at"):
            status = "revoked"
        elif expires_at is not None and expires_at <= now:
            status = "expired"
        else:
            status = "active"
        rows.append(
            {
                "id": str(token.get("id")),
                "name": str(token.get("name") or ""),
                "scope": names.get(org, org) if org else "Personal",
                "created": _when(token.get("created_at")),
                "last_used": _when(token.get("last_used_at")),
                "expires": _when(expires),
                "status": status,
                "new": str(token.get("id")) == new_id,
            }
        )
    return rows


def _seal(issuer: Issuer, session: ClerkSession, data: dict[str, Any]) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_derived_key(issuer, b"new token v1")).encrypt(
        nonce, json.dumps(data).encode(), session.session_id.encode()
    )
    return _b64(nonce + sealed)


def _unseal(issuer: Issuer, session: ClerkSession, value: str) -> dict[str, Any] | None:
    try:
        raw = _unb64(value)
        plain = AESGCM(_derived_key(issuer, b"new token v1")).decrypt(
            raw[:12], raw[12:], session.session_id.encode()
        )
        data = json.loads(plain)
    except (ValueError, InvalidTag):
        return None
    return data if isinstance(data, dict) else None


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
    selected, unusable = _preselect(picker.choices, wanted)
    tokens = extension_tokens.list_tokens(issuer, session)
    # L4: the page offers only lifetimes within the configured maximum.
    limit = extension_tokens.max_days(issuer)
    default_days = max(1, min(issuer.settings.extension_token_ttl // 86_400, limit))
    return _page(
        request,
        "tokens.html",
        status=status,
        script=new_token is not None,
        title="Extension tokens",
        who=_who(session),
        choices=picker.choices,
        selected=selected,
        warnings=[w for w in (picker.warning, unusable) if w],
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
    clerk_org_id: str | None = None,
    notice: str | None = None,
) -> Response:
    try:
        session = read_session(issuer, request)
        if session is None:
            return _sign_in(request, issuer, str(request.url))
        sealed = request.cookies.get(NEW_TOKEN_COOKIE)
        new_token = _unseal(issuer, session, sealed) if sealed else None
        response = _tokens_page(
            request,
            issuer,
            session,
            wanted=_wanted_org(clerk_org_id),
            new_token=new_token,
            notice=NOTICES.get(notice or ""),
        )
    except IssuerError as exc:
        return _issuer_error_page(request, exc, None)
    if sealed:
        response.delete_cookie(NEW_TOKEN_COOKIE, path=NEW_TOKEN_COOKIE_PATH, httponly=True)
    return response


@router.post("/dashboard/tokens/generate", response_class=HTMLResponse)
def tokens_generate(
    request: Request,
    issuer: IssuerDep,
    name: Annotated[str, Form()] = "",
    clerk_org_id: Annotated[str, Form()] = "",
    expires_in_days: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    who: str | None = None
    try:
        session = read_session(issuer, request)
        if session is None:
            return _sign_in(request, issuer, _tokens_url(request))
        who = _who(session)
        if _csrf_refused(request, issuer, session, csrf_token):
            return _forbidden(request, session)
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
            reason = DENIAL_TEXT.get(exc.reason, exc.reason)
            return _tokens_page(
                request,
                issuer,
                session,
                error=f"No token was created: {reason}.",
                status=403,
                form=form,
            )
    except IssuerError as exc:
        return _issuer_error_page(request, exc, who)
    keep_org = "?" + urlencode({"clerk_org_id": clerk_org_id}) if clerk_org_id else ""
    response = _redirect(_tokens_path(request) + keep_org)
    response.set_cookie(
        NEW_TOKEN_COOKIE,
        _seal(
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
    token_id: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    who: str | None = None
    try:
        session = read_session(issuer, request)
        if session is None:
            return _sign_in(request, issuer, _tokens_url(request))
        who = _who(session)
        if _csrf_refused(request, issuer, session, csrf_token):
            return _forbidden(request, session)
        try:
            extension_tokens.revoke(issuer, session, token_id)
        except NotFound:
            return _redirect(_tokens_path(request) + "?notice=already_revoked")
    except IssuerError as exc:
        return _issuer_error_page(request, exc, who)
    return _redirect(_tokens_path(request) + "?notice=revoked")


# -- static ------------------------------------------------------------------------


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        _static(name), media_type=media_type, headers={"Cache-Control": "public, max-age=3600"}
    )
