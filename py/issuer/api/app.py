"""The app factory, its middleware, and the one place errors become responses.

Limits (F4): request bodies over ``MAX_BODY_BYTES`` get 413 before they are
read into memory; JSON nesting is bounded by the body size and pydantic.
Every response carries security headers; token responses add ``no-store``.
Unexpected exceptions become a logged 500 without details; known errors
(:class:`~issuer.errors.IssuerError`) keep their stable ``error`` code.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from issuer import __version__
from issuer.api import pages, routes_meta, routes_oauth, routes_tokens, routes_usage
from issuer.errors import IssuerError, OrgScopeDenied
from issuer.service import Issuer

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def error_body(code: str, description: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code}
    if description:
        body["error_description"] = description
    body.update(extra)
    return body


class BodyLimit:
    """Pure ASGI middleware: refuse bodies larger than ``limit`` bytes with 413."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        response = JSONResponse(
            error_body("request_too_large", f"bodies are limited to {self.limit} bytes"),
            status_code=413,
        )
        await response({"type": "http"}, _empty_receive, send)


class _TooLarge(Exception):
    pass


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def build_app_without_issuer() -> FastAPI:
    """The app's routes and models only (for the OpenAPI document)."""
    return create_app(None)


def create_app(issuer: Issuer | None, *, close_issuer: bool = False) -> FastAPI:
    """The ASGI app. ``close_issuer`` closes the database pool etc. at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_issuer and issuer is not None:
            issuer.close()

    app = FastAPI(
        title="Org-scoped token issuer",
        version=__version__,
        description=(
            "Issues organization-scoped JWTs backed by pooled, seat-gated credits. "
            "Errors are JSON with a stable `error` code."
        ),
        lifespan=lifespan,
    )
    app.state.issuer = issuer

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.exception_handler(IssuerError)
    async def issuer_error(_: Request, exc: IssuerError) -> JSONResponse:
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if isinstance(exc, OrgScopeDenied):
            extra["reason"] = exc.reason
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        if exc.status == 503:
            headers["Retry-After"] = "1"
        return JSONResponse(
            error_body(exc.code, exc.message, **extra), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse(
            error_body("invalid_request", f"{where}: {first.get('msg', 'invalid')}"),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error"), status_code=500)

    for module in (routes_tokens, routes_oauth, routes_usage, routes_meta, pages):
        app.include_router(module.router)
    app.add_middleware(BodyLimit)
    return app


def app_from_env() -> FastAPI:
    """Uvicorn factory (``issuer serve``, workers): settings from the environment.

    A bad or missing variable stops start-up with a message naming it.
    """
    from issuer.settings import load_settings

    return create_app(Issuer.from_settings(load_settings()), close_issuer=True)
