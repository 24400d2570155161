"""The pages in a real browser: Debian's Chromium, driven by Playwright, against
a real `issuer serve` and the fake Clerk.

A tiny local HTTP server plays the other parties: the extension's loopback
listener (``/callback``, a redirect URI the env registers for any port), the
Clerk sign-in page (``/sign-in``) and another site that tries to frame the
authorization page (``/outer``). Each test saves a screenshot to docs/img/,
which docs/ui.md shows.

Chromium must be installed (scripts/system-deps.sh installs it): if it cannot
be launched the tests fail, they do not skip.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.migrations import repo_root
from issuer_dev.served import Served, issuer_serve
from support.world import CLIENT_ID, World, issuer_env, pkce_pair

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1000, "height": 700}
SCREENSHOTS = repo_root() / "docs" / "img"
TIMEOUT_MS = 15_000


# -- the other parties ---------------------------------------------------------------


@dataclass
class Elsewhere:
    """Records the callbacks it receives; serves the sign-in and framing pages."""

    url: str = ""
    callbacks: list[str] = field(default_factory=list)

    def callback_uri(self) -> str:
        return f"{self.url}/callback"


def _short(value: str) -> str:
    return value if len(value) <= 24 else value[:24] + "…"


def _handler(state: Elsewhere) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path == "/callback":
                state.callbacks.append(self.path)
                items = "".join(
                    f"<li><b>{html.escape(k)}</b>: {html.escape(_short(v[0]))}</li>"
                    for k, v in query.items()
                )
                body = f"<h1>Extension callback</h1><ul>{items}</ul>"
            elif parts.path == "/sign-in":
                back = html.escape(query.get("redirect_url", [""])[0])
                body = f"<h1>Clerk sign-in (stand-in)</h1><p>Back to: <code>{back}</code></p>"
            elif parts.path == "/outer":
                src = html.escape(query["src"][0])
                body = (
                    "<h1>Another site</h1>"
                    f'<iframe id="victim" src="{src}" width="900" height="260"></iframe>'
                    f'<iframe id="control" src="{state.url}/hello" width="900" height="80"></iframe>'
                )
            elif parts.path == "/hello":
                body = "<p id='hello'>a frameable page</p>"
            else:
                self.send_error(404)
                return
            data = f"<!doctype html><html><body>{body}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[Elsewhere]:
    state = Elsewhere()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(
    world: World,
    fake_clerk: FakeClerk,
    elsewhere: Elsewhere,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    env = issuer_env(world.db_url, fake_clerk, CLERK_SIGN_IN_URL=f"{elsewhere.url}/sign-in")
    with issuer_serve(env, tmp_path_factory.mktemp("serve-browser")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(`sudo apt-get install chromium`; scripts/system-deps.sh installs it)"
        )
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            pytest.fail(
                f"Chromium at {CHROMIUM} could not be launched ({exc}); install chromium "
                "(scripts/system-deps.sh installs it)"
            )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def people(world: World) -> dict[str, str]:
    """Alice: an active seat in Acme, suspended in Globex, pending in Initech, none in Hooli."""
    alice = world.user(email="alice@example.com")
    acme = world.org(pool=100, name="Acme Inc")
    globex = world.org(pool=100, name="Globex")
    initech = world.org(name="Initech")
    hooli = world.org(name="Hooli")
    world.seat(acme, alice, role="admin")
    world.seat(globex, alice, status="suspended")
    world.seat(initech, alice, status="pending")
    world.clerk.add_membership(alice, hooli)
    return {"alice": alice, "acme": acme, "globex": globex, "initech": initech, "hooli": hooli}


def _sign_in(world: World, context: BrowserContext, served: Served, user: str) -> None:
    token = world.session(user, email="alice@example.com", exp_in=900)
    context.add_cookies([{"name": "__session", "value": token, "url": served.url}])


def _authorize_url(served: Served, elsewhere: Elsewhere, challenge: str, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": elsewhere.callback_uri(),
        "state": "st-browser",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{served.url}/vscode/authorize?{urlencode(query)}"


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def _callback_query(elsewhere: Elsewhere, page: Page) -> dict[str, list[str]]:
    page.wait_for_url(f"{elsewhere.callback_uri()}?**")
    expect(page.get_by_role("heading", name="Extension callback")).to_be_visible()
    return parse_qs(urlsplit(page.url).query)


# -- the authorization page -------------------------------------------------------------


def test_approve_with_an_org_by_keyboard_redeems_into_an_org_token(
    world: World,
    served: Served,
    elsewhere: Elsewhere,
    context: BrowserContext,
    people: dict[str, str],
) -> None:
    _sign_in(world, context, served, people["alice"])
    verifier, challenge = pkce_pair()
    page = context.new_page()
    page.goto(_authorize_url(served, elsewhere, challenge))
    expect(page.get_by_role("heading", name="Sign in to the VS Code extension")).to_be_visible()
    expect(page.get_by_label("Personal")).to_be_checked()
    expect(page.get_by_label("Acme Inc")).to_be_enabled()
    _shot(page, "authorize.png")

    # Keyboard only: Tab reaches the account choice first, arrows move past the
    # disabled orgs, the next Tab is Approve.
    page.keyboard.press("Tab")
    expect(page.get_by_label("Personal")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Acme Inc")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Approve")).to_be_focused()
    page.keyboard.press("Enter")

    query = _callback_query(elsewhere, page)
    assert query["state"] == ["st-browser"]
    with httpx.Client(base_url=served.url, timeout=10) as http:
        r = http.post(
            "/api/extension/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "code_verifier": verifier,
                "redirect_uri": elsewhere.callback_uri(),
                "client_id": CLIENT_ID,
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["pool"] == "organization"
        v = http.get(
            "/api/extension/auth/validate",
            headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        )
    assert v.json()["claims"]["clerk_org_id"] == people["acme"]


def test_a_suspended_seat_cannot_be_chosen(
    world: World,
    served: Served,
    elsewhere: Elsewhere,
    context: BrowserContext,
    people: dict[str, str],
) -> None:
    _sign_in(world, context, served, people["alice"])
    _, challenge = pkce_pair()
    page = context.new_page()
    page.goto(_authorize_url(served, elsewhere, challenge, clerk_org_id=people["globex"]))
    expect(page.get_by_text("Globex cannot be used: seat suspended.")).to_be_visible()
    globex = page.get_by_label("Globex")
    expect(globex).to_be_disabled()
    expect(page.get_by_label("Personal")).to_be_checked()
    for name, reason in (
        ("Globex", "Seat suspended"),
        ("Initech", "Seat pending"),
        ("Hooli", "No seat"),
    ):
        expect(page.get_by_label(name)).to_be_disabled()
        expect(page.get_by_label(name)).to_have_accessible_description(re.compile(reason))
    page.get_by_text("Globex", exact=True).click(force=True)  # the label does nothing
    expect(globex).not_to_be_checked()
    _shot(page, "authorize-suspended.png")


def test_deny_and_signing_in_first(
    world: World,
    served: Served,
    elsewhere: Elsewhere,
    context: BrowserContext,
    people: dict[str, str],
) -> None:
    _, challenge = pkce_pair()
    url = _authorize_url(served, elsewhere, challenge)
    page = context.new_page()
    page.goto(url)  # no session yet: off to sign in, with the way back
    page.wait_for_url(f"{elsewhere.url}/sign-in?**")
    assert parse_qs(urlsplit(page.url).query)["redirect_url"] == [url]

    _sign_in(world, context, served, people["alice"])
    page.goto(url)
    page.get_by_role("button", name="Deny").click()
    query = _callback_query(elsewhere, page)
    assert query == {"error": ["access_denied"], "state": ["st-browser"], "iss": [served.url]}
    _shot(page, "authorize-denied.png")


def test_a_framed_authorization_page_is_refused(
    world: World,
    served: Served,
    elsewhere: Elsewhere,
    context: BrowserContext,
    people: dict[str, str],
) -> None:
    _sign_in(world, context, served, people["alice"])
    _, challenge = pkce_pair()
    page = context.new_page()
    victim_src = _authorize_url(served, elsewhere, challenge)
    with page.expect_console_message(lambda m: "frame-ancestors 'none'" in m.text) as blocked:
        page.goto(f"{elsewhere.url}/outer?{urlencode({'src': victim_src})}")
    # Chromium refused to frame the authorization page, and says why ...
    assert served.url in blocked.value.text
    # ... while the control frame (same site, no framing protection) renders.
    expect(page.frame_locator("#control").locator("#hello")).to_be_visible()
    framed = [f.url for f in page.frames if f != page.main_frame]
    assert not any(u.startswith(served.url) for u in framed), framed
    assert any(u.startswith("chrome-error://") for u in framed), framed
    assert page.frame_locator("#victim").get_by_role("button", name="Approve").count() == 0
    _shot(page, "framed-refused.png")


# -- the token dashboard ------------------------------------------------------------------


def test_generate_see_once_copy_and_revoke(
    world: World,
    served: Served,
    context: BrowserContext,
    people: dict[str, str],
) -> None:
    _sign_in(world, context, served, people["alice"])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
    page = context.new_page()
    page.goto(f"{served.url}/dashboard/tokens?clerk_org_id={people['acme']}")
    expect(page.get_by_role("heading", name="Extension tokens")).to_be_visible()
    org = page.get_by_label("Organization")
    expect(org).to_have_value(people["acme"])  # preselected by ?clerk_org_id
    expect(org.locator("option", has_text="Globex")).to_be_disabled()
    expect(org.locator("option", has_text="Globex")).to_have_text("Globex (seat suspended)")
    org.select_option(label="Personal")
    org.select_option(label="Acme Inc")
    page.get_by_label("Name", exact=True).fill("Work laptop")
    page.get_by_label("Expires after").select_option("30")
    page.get_by_role("button", name="Generate token").click()

    field_ = page.get_by_label("Token “Work laptop”")
    expect(field_).to_be_visible()
    token = field_.input_value()
    assert token.count(".") == 2
    copy = page.get_by_role("button", name="Copy")
    expect(copy).to_be_visible()  # the script unhid it
    copy.click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    row = page.get_by_role("row").filter(has_text="Work laptop")
    expect(row).to_contain_text("Acme Inc")
    expect(row).to_contain_text("never")
    expect(row).to_contain_text("active")
    _shot(page, "tokens-new.png")

    with httpx.Client(base_url=served.url, timeout=10) as http:
        ok = http.get("/api/extension/auth/validate", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert ok.json()["claims"]["clerk_org_id"] == people["acme"]

        page.reload()
        expect(page.get_by_role("heading", name="Extension tokens")).to_be_visible()
        expect(page.get_by_text("Your new token")).to_have_count(0)
        assert token not in page.content()

        page.get_by_role("button", name="Revoke Work laptop").click()
        expect(page.get_by_text("Token revoked.")).to_be_visible()
        expect(page.get_by_role("row").filter(has_text="Work laptop")).to_contain_text("revoked")
        expect(page.get_by_role("button", name="Revoke Work laptop")).to_have_count(0)
        _shot(page, "tokens-revoked.png")

        gone = http.get(
            "/api/extension/auth/validate", headers={"Authorization": f"Bearer {token}"}
        )
    assert gone.status_code == 401
    assert gone.json()["valid"] is False
