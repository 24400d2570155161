"""``/vscode/authorize``: the PKCE authorization page and the user's decision.

An unknown client or unregistered ``redirect_uri`` is an error page, never a
redirect; bad PKCE parameters of a registered client go back to it as an
OAuth error (RFC 6749 §4.1.2.1). Both are checked before anyone signs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from issuer.api.deps import IssuerDep, absolute_url, public_issuer
from issuer.api.pages.csrf import csrf_token
from issuer.api.pages.org_picker import denial_text, org_picker, wanted_org
from issuer.api.pages.render import PageAnswer, PageRoute, csp_source, error_page, page, redirect
from issuer.api.pages.session import PageOpening, who
from issuer.clerk import ClerkSession
from issuer.errors import BadRequest, OrgScopeDenied
from issuer.flows import oauth
from issuer.service import Issuer

router = APIRouter(route_class=PageRoute)


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
        The PKCE rules are the flow's (:func:`issuer.flows.oauth.check_pkce_request`).
        """
        if not self.response_type:
            return "invalid_request", "response_type is required (response_type=code)"
        if self.response_type != "code":
            return "unsupported_response_type", "only response_type=code is supported"
        try:
            oauth.check_pkce_request(self.code_challenge_method, self.code_challenge, self.state)
        except BadRequest as exc:
            return "invalid_request", exc.message
        return None


def _authorization_error(
    request: Request, params: AuthorizeParams, error: str, **more: str
) -> Response:
    """An error answer to the registered client: ``error``, ``state`` and ``iss`` (RFC 9207)."""
    answer = {"error": error, **more}
    if params.state and len(params.state) <= oauth.MAX_STATE:
        answer["state"] = params.state
    answer["iss"] = public_issuer(request)
    return redirect(oauth.redirect_with(params.redirect_uri, answer))


def _check_client(request: Request, issuer: Issuer, params: AuthorizeParams) -> None:
    """An error page for an unknown client or unregistered redirect URI (never a redirect)."""
    try:
        oauth.check_client(issuer, params.client_id, params.redirect_uri)
    except BadRequest as exc:
        raise PageAnswer(
            error_page(
                request,
                400,
                "This sign-in link is not valid",
                f"{exc.message}. Start the sign-in again from the extension.",
            )
        ) from None


def _requested(
    request: Request,
    issuer: IssuerDep,
    response_type: str = "",
    client_id: str = "",
    redirect_uri: str = "",
    state: str = "",
    code_challenge: str = "",
    code_challenge_method: str = "",
) -> AuthorizeParams:
    """The GET's parameters: the client first, then the response type and PKCE (before sign-in)."""
    params = AuthorizeParams(
        client_id, redirect_uri, state, code_challenge, code_challenge_method, response_type
    )
    _check_client(request, issuer, params)
    if (problem := params.problem()) is not None:
        # The client and redirect URI are registered: tell the extension (RFC 6749 §4.1.2.1).
        error, description = problem
        raise PageAnswer(
            _authorization_error(request, params, error, error_description=description)
        )
    return params


def _posted(
    request: Request,
    issuer: IssuerDep,
    client_id: Annotated[str, Form()] = "",
    redirect_uri: Annotated[str, Form()] = "",
    state: Annotated[str, Form()] = "",
    code_challenge: Annotated[str, Form()] = "",
    code_challenge_method: Annotated[str, Form()] = "",
) -> AuthorizeParams:
    """The POST's parameters; the response type was checked by the GET that rendered the form."""
    params = AuthorizeParams(
        client_id, redirect_uri, state, code_challenge, code_challenge_method, "code"
    )
    _check_client(request, issuer, params)
    return params


def _back_to_the_page(request: Request, form: FormData | None) -> str:
    """After sign-in, back to the GET of this page with the posted parameters."""
    fields = {key: value for key, value in (form or FormData()).items() if isinstance(value, str)}
    params = AuthorizeParams(
        fields.get("client_id", ""),
        fields.get("redirect_uri", ""),
        fields.get("state", ""),
        fields.get("code_challenge", ""),
        fields.get("code_challenge_method", ""),
        "code",
    )
    query = urlencode(params.as_query(fields.get("clerk_org_id")))
    return absolute_url(request, request.url.path, query)


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
    selected, warnings = picker.preselect(wanted)
    target = urlsplit(params.redirect_uri)
    return page(
        request,
        "authorize.html",
        status=status,
        form_targets=(csp_source(params.redirect_uri),),
        title="Authorize the extension",
        who=who(session),
        params=params,
        return_to=target.netloc or f"{target.scheme}:",
        choices=picker.choices,
        selected=selected,
        notice=None,
        warnings=warnings,
        error=error,
        csrf=csrf_token(issuer, session),
        action=request.url.path,
    )


@router.get("/vscode/authorize", response_class=HTMLResponse)
def authorize_page(
    request: Request,
    issuer: IssuerDep,
    params: Annotated[AuthorizeParams, Depends(_requested)],
    session: Annotated[ClerkSession, Depends(PageOpening())],
    clerk_org_id: str | None = None,
) -> Response:
    return _authorize_page(request, issuer, session, params, wanted=wanted_org(clerk_org_id))


@router.post("/vscode/authorize", response_class=HTMLResponse)
def authorize_decision(
    request: Request,
    issuer: IssuerDep,
    params: Annotated[AuthorizeParams, Depends(_posted)],
    session: Annotated[ClerkSession, Depends(PageOpening(form=True, back=_back_to_the_page))],
    clerk_org_id: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
) -> Response:
    if decision == "deny":
        return _authorization_error(request, params, "access_denied")
    if decision != "approve":
        return error_page(
            request, 400, "This request is not valid", "Choose Approve or Deny.", who(session)
        )
    try:
        result = oauth.complete_vscode_auth(
            issuer,
            session,
            client_id=params.client_id,
            redirect_uri=params.redirect_uri,
            state=params.state,
            code_challenge=params.code_challenge,
            code_challenge_method=params.code_challenge_method,
            clerk_org_id=clerk_org_id or None,
            require_org=bool(clerk_org_id),
            iss=public_issuer(request),
        )
    except OrgScopeDenied as exc:
        return _authorize_page(
            request,
            issuer,
            session,
            params,
            wanted=None,
            status=403,
            error=f"That organization cannot be used: {denial_text(exc.reason)}. "
            "Choose another account.",
        )
    return redirect(result.redirect_to)
