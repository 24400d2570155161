"""The issuer's HTML pages: the VS Code authorization page, the device page and the token dashboard.

* ``GET /vscode/authorize`` (:mod:`.authorize`): the page the extension
  opens with its PKCE parameters. The signed-in user picks the account usage
  is billed to (Personal, or an organization where their seat is active) and
  approves or denies; both answers are 303 redirects to the registered
  ``redirect_uri``. An unknown client or unregistered ``redirect_uri`` is an
  error page, never a redirect.
* ``GET /vscode/device`` (:mod:`.device`): RFC 8628's verification page.
* ``GET /dashboard/tokens`` (:mod:`.tokens`): the user's long-lived extension
  tokens (never the token itself), generate (the new token is shown once)
  and revoke.
* ``GET /dashboard/caps`` (:mod:`.caps`): each seat's spend against its cap
  in the orgs the user administers; owners and admins set caps (H2).

Server-rendered (Jinja2), usable without JavaScript: every form posts to the
server, which answers with a 303 or a page. The modules, one job each:

* :mod:`.render`: templates, the Content-Security-Policy and other security
  headers of every page (no inline script or style, ``frame-ancestors
  'none'``, ``X-Frame-Options: DENY``), error pages, redirects, and
  :class:`~.render.PageRoute`, which turns an early answer or an
  ``IssuerError`` into a page.
* :mod:`.keys`: keys derived from ``JWT_SECRET``, one per purpose.
* :mod:`.csrf`: every form carries a CSRF token bound to the Clerk session id
  (an HMAC); a POST from another site (``Origin`` / ``Sec-Fetch-Site``) or
  without a valid token gets a 403 page.
* :mod:`.sealed_cookie`: a new token reaches the page after the generate
  POST's 303 in a short-lived cookie, encrypted (AES-GCM, bound to the
  session id) and deleted by the page that shows it, so a reload does not
  show it again and no server-side store is needed (any number of workers).
* :mod:`.session`: who is signed in (the Clerk session token, read as
  Clerk-backed servers read it: an ``Authorization: Bearer`` header, else the
  ``__session`` cookie, verified against Clerk's JWKS), and
  :class:`~.session.PageOpening`, the one dependency every handler opens
  with: the session, else a redirect to ``CLERK_SIGN_IN_URL`` with a
  ``redirect_url`` back; for a form, the CSRF check.
* :mod:`.org_picker`: the accounts the user may pick (Clerk memberships,
  seats from the database).
"""

from __future__ import annotations

from fastapi import APIRouter

from issuer.api.pages import authorize, caps, device, static, tokens
from issuer.api.pages.csrf import csrf_token, csrf_valid
from issuer.api.pages.render import page_headers
from issuer.api.pages.session import read_session

router = APIRouter(include_in_schema=False)
for _module in (authorize, device, tokens, caps, static):
    router.include_router(_module.router)

__all__ = ["csrf_token", "csrf_valid", "page_headers", "read_session", "router"]
