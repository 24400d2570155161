"""The pages' structure: every page handler opens with the one dependency.

``issuer.api.pages.session.PageOpening`` does session → sign-in redirect →
(for a form) CSRF; a handler that skipped it would serve a page without a
session or accept a form without a CSRF token. The behaviour itself is
tested in test_pages.py, test_device_grant.py and test_browser.py.
"""

from __future__ import annotations

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from issuer.api.pages import authorize, device, static, tokens
from issuer.api.pages.render import PageRoute
from issuer.api.pages.session import PageOpening


def _openings(dependant: Dependant) -> list[PageOpening]:
    found = [d.call for d in dependant.dependencies if isinstance(d.call, PageOpening)]
    for sub in dependant.dependencies:
        found.extend(_openings(sub))
    return found


def test_every_page_handler_opens_with_the_session_and_every_form_with_csrf() -> None:
    routes = [r for m in (authorize, device, tokens) for r in m.router.routes]
    assert all(isinstance(r, PageRoute) for r in routes)
    pages = [r for r in routes if isinstance(r, APIRoute)]
    assert {(r.path, m) for r in pages for m in r.methods or ()} == {
        ("/vscode/authorize", "GET"),
        ("/vscode/authorize", "POST"),
        ("/vscode/device", "GET"),
        ("/vscode/device", "POST"),
        ("/dashboard/tokens", "GET"),
        ("/dashboard/tokens/generate", "POST"),
        ("/dashboard/tokens/revoke", "POST"),
    }
    for route in pages:
        openings = _openings(route.dependant)
        assert len(openings) == 1, route.path
        assert openings[0].form == ("POST" in (route.methods or ())), route.path
    # The static files are the only page route without a session.
    assert [r.path for r in static.router.routes if isinstance(r, APIRoute)] == ["/static/{name}"]
