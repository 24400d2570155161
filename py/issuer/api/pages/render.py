"""Rendering: templates, the security headers of every page, error pages, redirects.

:class:`PageRoute` is the route class of every page: an early answer a
dependency raised (:class:`PageAnswer`: a sign-in redirect, a 403 page, an
error redirect to the client) is sent as is, and an ``IssuerError`` becomes
an error page instead of the API's JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from issuer.errors import BadRequest, ClerkUnavailable, DatabaseUnavailable, IssuerError
from issuer.service import Issuer

WHO = "page_who"
"""``request.state`` attribute: who is signed in, once :class:`~.session.PageOpening` knows."""


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
def static_bytes(name: str) -> bytes:
    return resources.files("issuer").joinpath("static", name).read_bytes()


def csp_source(uri: str) -> str:
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


def page(
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
    html = (
        _templates()
        .get_template(template)
        .render(
            base=base,
            static=base + "/static",
            brand=issuer.settings.jwt_issuer if issuer else "Issuer",
            **context,
        )
    )
    return HTMLResponse(
        html, status_code=status, headers=page_headers(form_targets=form_targets, script=script)
    )


def error_page(
    request: Request, status: int, title: str, message: str, who: str | None = None
) -> HTMLResponse:
    return page(request, "error.html", status=status, title=title, message=message, who=who)


def issuer_error_page(request: Request, exc: IssuerError, who: str | None) -> HTMLResponse:
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


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(
        url,
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


class PageAnswer(Exception):
    """Raised by a page dependency: answer with ``response`` and do not run the handler."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class PageRoute(APIRoute):
    """FastAPI's route, answering :class:`PageAnswer` and ``IssuerError`` with pages.

    The pattern of FastAPI's "Custom Request and APIRoute class" guide: the
    dependencies and the handler run as usual; only these two exceptions
    are turned into responses here, every other one goes to the app's
    handlers.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except PageAnswer as answer:
                return answer.response
            except IssuerError as exc:
                return issuer_error_page(request, exc, getattr(request.state, WHO, None))

        return page_handler
