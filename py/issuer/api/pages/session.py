"""Who is signed in, and :class:`PageOpening`: the one dependency every page handler opens with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from issuer.api.deps import IssuerDep, absolute_url
from issuer.api.pages.csrf import CSRF_FIELD, csrf_refused
from issuer.api.pages.render import WHO, PageAnswer, error_page, redirect
from issuer.clerk import ClerkSession
from issuer.errors import InvalidToken
from issuer.service import Issuer

log = logging.getLogger(__name__)

SESSION_COOKIE = "__session"
"""The cookie Clerk's frontend keeps the short-lived session token in."""


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


def who(session: ClerkSession) -> str:
    return session.email or session.user_id


def sign_in(request: Request, issuer: Issuer, back: str) -> Response:
    url = issuer.settings.clerk_sign_in_url
    if not url:
        return error_page(
            request,
            401,
            "Sign-in required",
            "Sign in to your account in this browser, then open this page again.",
        )
    separator = "&" if urlsplit(url).query else "?"
    return redirect(url + separator + urlencode({"redirect_url": back}))


def forbidden(request: Request, session: ClerkSession) -> Response:
    return error_page(
        request,
        403,
        "Request refused",
        "This form was not sent from this site or has expired. "
        "Go back, reload the page and try again.",
        who(session),
    )


def this_url(request: Request, _form: FormData | None) -> str:
    """The default way back from sign-in: this very path and query, on ISSUER_URL (L11)."""
    return absolute_url(request, request.url.path, request.url.query)


BackTo = Callable[[Request, FormData | None], str]


class PageOpening:
    """session → sign-in redirect → (for a form) CSRF: the opening of every page handler.

    Used as ``Depends(PageOpening(...))``; gives the handler the verified
    :class:`ClerkSession`. Without a session the visitor is sent to sign in
    with ``back(request, form)`` as the way back; a form (``form=True``) from
    another site or without a valid CSRF token (field ``csrf_token``) gets
    the 403 page. Both answers are :class:`PageAnswer`, sent by
    :class:`~.render.PageRoute`. Who is signed in goes to ``request.state``
    for the error pages.
    """

    def __init__(self, *, form: bool = False, back: BackTo = this_url) -> None:
        self.form = form
        self.back = back

    async def __call__(self, request: Request, issuer: IssuerDep) -> ClerkSession:
        data = await request.form() if self.form else None
        # Verifying may fetch Clerk's JWKS (blocking HTTP): on a worker thread.
        session = await run_in_threadpool(read_session, issuer, request)
        if session is None:
            raise PageAnswer(sign_in(request, issuer, self.back(request, data)))
        setattr(request.state, WHO, who(session))
        if data is not None:
            token = data.get(CSRF_FIELD)
            if csrf_refused(request, issuer, session, token if isinstance(token, str) else ""):
                raise PageAnswer(forbidden(request, session))
        return session
