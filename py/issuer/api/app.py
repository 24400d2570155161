"""The app factory, its middleware, and the one place errors become responses.

Limits (F4, docs/reliability.md), enforced by :class:`BodyLimit` before any
route runs: header names and values over ``MAX_HEADER_BYTES`` get 431, a path
and query over ``MAX_URL_BYTES`` get 414, bodies over ``MAX_BODY_BYTES`` get
413 (from Content-Length before a byte is read, otherwise as soon as a chunked
body passes the limit), JSON bodies nested deeper than ``MAX_JSON_DEPTH`` get
400. ``issuer serve`` adds uvicorn's own limits (cli/serve.py).
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
from issuer.api import (
    openapi_shape,
    pages,
    routes_holds,
    routes_meta,
    routes_oauth,
    routes_tokens,
    routes_usage,
)
from issuer.errors import IssuerError, OAuthOrgScopeLost, OrgScopeDenied, OrgScopeLost, SlowDown
from issuer.service import Issuer

log = logging.getLogger(__name__)

#: Largest request body (bytes). The biggest legitimate body is a token
#: request of a few KB.
MAX_BODY_BYTES = 64 * 1024
#: Largest sum of header name and value sizes (bytes). A Clerk session token is
#: 1-3 KB. (``issuer serve`` also refuses, with 400, a request head that is
#: still incomplete after 16 KB: issuer.api.http_protocol; a head that arrives
#: in one read is not caught there, so this check is the one that always holds.)
MAX_HEADER_BYTES = 12 * 1024
#: Longest path plus query string (bytes): 414 beyond.
MAX_URL_BYTES = 8 * 1024
#: Deepest nesting of arrays and objects in a JSON body. Python's parser
#: recurses per level: ~1,000 levels (2 KB of brackets) would raise
#: RecursionError, a 500, on any route that parses JSON itself.
MAX_JSON_DEPTH = 64

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


_SECURITY_HEADER_ITEMS = tuple(
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
)


def error_body(code: str, description: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code}
    if description:
        body["error_description"] = description
    body.update(extra)
    return body


class BodyLimit:
    """Pure ASGI middleware: the request limits (module docstring), answered as JSON.

    The request line and headers are checked first; then the body is read
    here, at most ``limit`` bytes (a larger Content-Length is refused before a
    byte is read, a chunked body as soon as it passes the limit), a body that
    may be JSON (JSON or no content type) is checked for nesting depth, and
    the app gets the body unchanged. Reading it here, not while the app
    parses, keeps the answer a 413: FastAPI turns any error raised while it
    reads a body into a 400.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        header_limit: int = MAX_HEADER_BYTES,
        json_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.limit = limit
        self.header_limit = header_limit
        self.json_depth = json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = 0
        has_body = False
        maybe_json = True
        for name, value in scope.get("headers", []):
            header_bytes += len(name) + len(value)
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = self.limit + 1
                if length > self.limit:
                    await self._reject(send, 413)
                    return
                has_body = has_body or length > 0
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"content-type":
                ctype = value.split(b";")[0].strip().lower()
                maybe_json = ctype == b"" or b"json" in ctype
        if header_bytes > self.header_limit:
            await self._reject(send, 431)
            return
        url_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if url_bytes > MAX_URL_BYTES:
            await self._reject(send, 414)
            return
        if not has_body:  # HTTP/1.1: no Content-Length and not chunked means no body
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._reject(send, 413)
                return
            if not message.get("more_body", False):
                break
        if maybe_json and _json_deeper_than(bytes(body), self.json_depth):
            await self._reject(send, 400)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _reject(self, send: Send, status: int) -> None:
        code, description = {
            400: ("invalid_request", f"JSON bodies may nest at most {self.json_depth} levels"),
            413: ("request_too_large", f"bodies are limited to {self.limit} bytes"),
            414: ("uri_too_long", f"path and query are limited to {MAX_URL_BYTES} bytes"),
            431: (
                "request_header_fields_too_large",
                f"headers are limited to {self.header_limit} bytes in total",
            ),
        }[status]
        response = JSONResponse(
            error_body(code, description), status_code=status, headers=SECURITY_HEADERS
        )
        await response({"type": "http"}, _empty_receive, send)


class SecurityHeaders:
    """Pure ASGI middleware: :data:`SECURITY_HEADERS` on every response that lacks them.

    A header the response already has (a page's own Content-Security-Policy)
    is kept. Wrapping ``send`` costs no extra task or stream, unlike
    ``@app.middleware("http")``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in _SECURITY_HEADER_ITEMS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _json_deeper_than(body: bytes, limit: int) -> bool:
    """Does this (JSON) body nest arrays/objects more than ``limit`` deep?

    Counting brackets at C speed settles almost every body; only one with
    more brackets than the limit is scanned (strings skipped).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the already-read body once, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
        servers=[{"url": "/", "description": "The issuer serving this document"}],
        license_info={"name": "MIT", "identifier": "MIT"},
    )
    openapi_shape.install(app)
    app.state.issuer = issuer
    app.state.coalescer = routes_usage.make_coalescer(issuer)

    @app.exception_handler(IssuerError)
    async def issuer_error(_: Request, exc: IssuerError) -> JSONResponse:
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if isinstance(exc, OrgScopeDenied):
            extra["reason"] = exc.reason
        if isinstance(exc, (OrgScopeLost, OAuthOrgScopeLost)):
            extra["clerk_org_id"] = exc.clerk_org_id
            extra["reason"] = exc.reason
        if isinstance(exc, SlowDown):
            extra["interval"] = exc.interval  # RFC 8628 §3.5: the new interval
        if (challenge := exc.challenge()) is not None:
            headers["WWW-Authenticate"] = challenge
        if exc.status == 503:
            headers["Retry-After"] = "1"
        if exc.status == 429:
            headers["Retry-After"] = "60"  # R6: device-code creation, counted per minute
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
        codes = {
            400: "invalid_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "request_too_large",
            422: "invalid_request",
        }
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        # Sent by Starlette's outermost middleware, outside SecurityHeaders.
        return JSONResponse(error_body("internal_error"), status_code=500, headers=SECURITY_HEADERS)

    for module in (routes_tokens, routes_oauth, routes_usage, routes_holds, routes_meta, pages):
        app.include_router(module.router)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit)  # outermost: its refusals carry the headers themselves
    return app


def app_from_env() -> FastAPI:
    """Uvicorn factory (``issuer serve``, workers): settings from the environment.

    A bad or missing variable stops start-up with a message naming it.
    """
    from issuer.settings import load_settings

    return create_app(Issuer.from_settings(load_settings()), close_issuer=True)
