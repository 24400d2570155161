"""The HTTP API (FastAPI). Handlers are thin: they parse, call a flow, shape JSON.

* :mod:`.app`: the app factory, middleware (size limits, security headers)
  and the ONE place where errors become HTTP responses.
* :mod:`.deps`: Clerk-session and bearer-token dependencies.
* :mod:`.models`: request and response models (they make the OpenAPI document).
* ``routes_*``: one module per group of routes.
"""

from issuer.api.app import create_app

__all__ = ["create_app"]
