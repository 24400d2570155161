"""The OpenAPI document: FastAPI's, corrected to what the app answers.

FastAPI documents a 422 ``HTTPValidationError`` for every route with
parameters; this app answers 400 ``invalid_request`` (app.py). The security
schemes come from the routes' dependencies (deps.py); the answers that no
route produces itself come from the middleware (app.py's ``BodyLimit``):
414 and 431 on every operation, 413 on those with a body. So
:func:`shape_openapi` rewrites, for every operation:

* 422 ``HTTPValidationError`` -> 400 ``invalid_request`` (also where the
  route reads its body itself); a 422 a route declares itself stays;
* 401 ``invalid_token`` (with ``WWW-Authenticate``) where a bearer token is
  required, unless the route documents its own 401;
* the middleware's refusals;
* ``security: []`` where no token is asked for (public, said explicitly).

py/tests/test_openapi_conformance.py walks every operation against a real
``issuer serve``; ``make lint`` runs Redocly's recommended rules on it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

#: Shared answers (components/responses), by status.
RESPONSES: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("InvalidRequest", {"description": "invalid_request: a parameter or the body"}),
    "401": (
        "Unauthorized",
        {
            "description": "invalid_token: no bearer token, or not a valid one (RFC 6750)",
            "headers": {
                "WWW-Authenticate": {
                    "description": 'Bearer realm="...", error="invalid_token" when a token '
                    "was sent",
                    "schema": {"type": "string"},
                }
            },
        },
    ),
    "413": ("BodyTooLarge", {"description": "request_too_large: over 64 KiB of body"}),
    "414": ("UriTooLong", {"description": "uri_too_long: path and query over 8 KiB"}),
    "431": (
        "HeadersTooLarge",
        {"description": "request_header_fields_too_large: over 12 KiB of headers"},
    ),
}


def _validation_422(response: dict[str, Any]) -> bool:
    return "HTTPValidationError" in json.dumps(response)


def _ref(status: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{RESPONSES[status][0]}"}


def shape_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document with the answers this app really gives (module docstring)."""
    for item in doc.get("paths", {}).values():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = op.setdefault("responses", {})
            if "422" in responses and _validation_422(responses["422"]):
                del responses["422"]
            wanted = ["414", "431"]
            if op.get("parameters") or op.get("requestBody"):
                wanted.append("400")
            if op.get("requestBody"):
                wanted.append("413")
            if op.get("security"):
                wanted.append("401")
            else:
                op["security"] = []
            for status in wanted:
                responses.setdefault(status, _ref(status))
            op["responses"] = dict(sorted(responses.items()))
    components = doc.setdefault("components", {})
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        if name not in json.dumps(doc["paths"]):
            schemas.pop(name, None)
    components["responses"] = {
        name: {**spec, "content": _ERROR} for name, spec in RESPONSES.values()
    }
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`shape_openapi`'s document at ``/openapi.json`` (built once)."""

    build = app.openapi  # FastAPI's: caches its document in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = shape_openapi(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
