"""The HTML pages, in process: /vscode/authorize and /dashboard/tokens.

What a browser cannot easily show is checked here: headers (CSP, framing,
caching), CSRF refusals, error pages instead of redirects, the sign-in
redirect, escaping, and that a token is never on a page twice. The real
browser drives the same pages in test_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from issuer.api import create_app
from issuer.api.pages import csrf_token, csrf_valid
from issuer.clerk import ClerkSession
from issuer.service import Issuer
from issuer.settings import load_settings
from issuer_dev.fake_clerk import FakeClerk
from support.world import CLIENT_ID, REDIRECT_URI, World, issuer_env, make_world, pkce_pair

SIGN_IN = "https://accounts.example.test/sign-in"


@pytest.fixture(scope="module")
def world(db_url: str, fake_clerk: FakeClerk) -> Iterator[World]:
    w = make_world(db_url, fake_clerk, CLERK_SIGN_IN_URL=SIGN_IN)
    try:
        yield w
    finally:
        w.close()
        w.issuer.close()


@pytest.fixture(autouse=True)
def _fresh_cookie_jar(world: World) -> None:
    world.client.cookies.clear()


class Page(HTMLParser):
    """The start tags (with attributes) and the text of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.chunks: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v if v is not None else "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]

    def radios(self) -> dict[str, dict[str, str]]:
        return {a["value"]: a for a in self.all("input", type="radio")}

    def csrf(self) -> str:
        return self.all("input", name="csrf_token")[0]["value"]


def _auth_query(challenge: str, **over: str) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "state": "st-42",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query.update(over)
    return query


def _cookie(world: World, user: str, sid: str = "sess_pages", **kw: Any) -> dict[str, str]:
    return {"Cookie": f"__session={world.session(user, session_id=sid, **kw)}"}


def _get(world: World, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return world.client.get(path, headers=headers or {}, follow_redirects=False)


def _post(world: World, path: str, data: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    return world.client.post(path, data=data, headers=headers, follow_redirects=False)


def _assert_page_headers(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"].startswith("text/html")


@pytest.fixture(scope="module")
def alice_orgs(world: World) -> dict[str, str]:
    """Alice: active seat in Acme, suspended in Globex, pending in Initech, no seat in Hooli."""
    alice = world.user(email="alice@example.com")
    acme = world.org(pool=50, name="Acme Inc")
    globex = world.org(pool=50, name="Globex")
    initech = world.org(name="Initech")
    hooli = world.org(name="Hooli")
    world.seat(acme, alice, role="admin")
    world.seat(globex, alice, status="suspended")
    world.seat(initech, alice, status="pending")
    world.clerk.add_membership(alice, hooli)
    return {"alice": alice, "acme": acme, "globex": globex, "initech": initech, "hooli": hooli}


# -- /vscode/authorize: GET ------------------------------------------------------------


def test_org_picker_offers_active_seats_and_explains_the_others(
    world: World, alice_orgs: dict[str, str]
) -> None:
    _, challenge = pkce_pair()
    r = _get(
        world,
        "/vscode/authorize?" + urlencode(_auth_query(challenge)),
        _cookie(world, alice_orgs["alice"], email="alice@example.com"),
    )
    assert r.status_code == 200, r.text
    _assert_page_headers(r)
    assert "form-action 'self' http://127.0.0.1:53682" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]
    page = Page(r.text)
    radios = page.radios()
    assert list(radios) == [
        "",
        alice_orgs["acme"],
        alice_orgs["globex"],
        alice_orgs["hooli"],
        alice_orgs["initech"],
    ]
    assert "checked" in radios[""], "Personal is the default"
    assert "disabled" not in radios[alice_orgs["acme"]]
    for org in ("globex", "hooli", "initech"):
        assert "disabled" in radios[alice_orgs[org]], org
    text = page.text
    assert "Seat suspended" in text
    assert "Seat pending" in text
    assert "No seat" in text
    assert "alice@example.com" in text
    # Every control has a label; the disabled ones say why.
    label_targets = {a["for"] for a in page.all("label")}
    for radio in radios.values():
        assert radio["id"] in label_targets
    for org in ("globex", "hooli", "initech"):
        why = radios[alice_orgs[org]]["aria-describedby"]
        assert page.all("span", id=why)
    # The PKCE parameters travel as hidden fields; the state is escaped, not markup.
    hidden = {a["name"]: a["value"] for a in page.all("input", type="hidden")}
    assert hidden["code_challenge"] == challenge
    assert hidden["redirect_uri"] == REDIRECT_URI
    assert hidden["csrf_token"]


def test_clerk_org_id_preselects_an_org_and_an_unusable_one_is_explained(
    world: World, alice_orgs: dict[str, str]
) -> None:
    _, challenge = pkce_pair()
    cookie = _cookie(world, alice_orgs["alice"])
    query = _auth_query(challenge, clerk_org_id=alice_orgs["acme"])
    page = Page(_get(world, "/vscode/authorize?" + urlencode(query), cookie).text)
    assert "checked" in page.radios()[alice_orgs["acme"]]
    assert "checked" not in page.radios()[""]

    query = _auth_query(challenge, clerk_org_id=alice_orgs["globex"])
    page = Page(_get(world, "/vscode/authorize?" + urlencode(query), cookie).text)
    assert "checked" in page.radios()[""]
    assert "Globex cannot be used: seat suspended" in page.text


def test_markup_in_parameters_is_escaped(world: World, alice_orgs: dict[str, str]) -> None:
    _, challenge = pkce_pair()
    state = '"><script>alert(1)</script>'
    r = _get(
        world,
        "/vscode/authorize?" + urlencode(_auth_query(challenge, state=state)),
        _cookie(world, alice_orgs["alice"]),
    )
    assert r.status_code == 200
    assert "<script>alert(1)" not in r.text
    assert Page(r.text).all("input", name="state")[0]["value"] == state


def test_without_a_session_the_page_sends_the_visitor_to_sign_in_and_back(world: World) -> None:
    _, challenge = pkce_pair()
    path = "/vscode/authorize?" + urlencode(_auth_query(challenge))
    for headers in ({}, {"Cookie": "__session=not-a-token"}):
        r = _get(world, path, headers)
        assert r.status_code == 303
        location = urlsplit(r.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == SIGN_IN
        assert parse_qs(location.query)["redirect_url"] == ["http://testserver" + path]


def test_a_bearer_header_is_a_session_too(world: World, alice_orgs: dict[str, str]) -> None:
    _, challenge = pkce_pair()
    r = _get(
        world,
        "/vscode/authorize?" + urlencode(_auth_query(challenge)),
        world.clerk_auth(alice_orgs["alice"]),
    )
    assert r.status_code == 200
    assert Page(r.text).radios()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"client_id": "evil-client"}, "unknown client_id"),
        ({"redirect_uri": "https://evil.example/cb"}, "redirect_uri is not registered"),
        ({"redirect_uri": ""}, "redirect_uri is not registered"),
        ({"redirect_uri": "http://127.0.0.1:53682/callback#frag"}, "not registered"),
    ],
)
def test_a_bad_client_or_redirect_uri_is_an_error_page_never_a_redirect(
    world: World, alice_orgs: dict[str, str], over: dict[str, str], message: str
) -> None:
    _, challenge = pkce_pair()
    path = "/vscode/authorize?" + urlencode(_auth_query(challenge, **over))
    for headers in ({}, _cookie(world, alice_orgs["alice"])):
        r = _get(world, path, headers)
        assert r.status_code == 400
        assert "location" not in r.headers
        _assert_page_headers(r)
        assert message in Page(r.text).text


def test_bad_pkce_parameters_go_back_to_the_registered_client(world: World) -> None:
    _, challenge = pkce_pair()
    r = _get(
        world,
        "/vscode/authorize?" + urlencode(_auth_query(challenge, code_challenge_method="plain")),
    )
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["st-42"]
    assert query["iss"] == ["http://testserver"]


def test_R3_response_type_is_checked_and_answered_to_the_registered_client(
    world: World, alice_orgs: dict[str, str]
) -> None:
    """RFC 6749 §4.1.2.1: unsupported_response_type / invalid_request, by redirect."""
    _, challenge = pkce_pair()
    for response_type, error in (
        ("token", "unsupported_response_type"),
        ("code id_token", "unsupported_response_type"),
        ("", "invalid_request"),
    ):
        query = _auth_query(challenge, response_type=response_type)
        if not response_type:
            del query["response_type"]
        r = _get(
            world, "/vscode/authorize?" + urlencode(query), _cookie(world, alice_orgs["alice"])
        )
        assert r.status_code == 303, (response_type, r.text)
        location = r.headers["location"]
        assert location.startswith(REDIRECT_URI + "?")
        answer = parse_qs(urlsplit(location).query)
        assert answer["error"] == [error], response_type
        assert answer["state"] == ["st-42"]
        assert answer["iss"] == ["http://testserver"]
    # An unregistered redirect URI is still an error page, whatever the response type.
    query = _auth_query(challenge, response_type="token", redirect_uri="https://evil.example/cb")
    r = _get(world, "/vscode/authorize?" + urlencode(query))
    assert r.status_code == 400 and "location" not in r.headers


def test_R1_authorization_responses_carry_iss_the_metadata_issuer(
    world: World, alice_orgs: dict[str, str]
) -> None:
    """RFC 9207: ``iss`` on the success redirect equals the RFC 8414 ``issuer``."""
    alice = alice_orgs["alice"]
    _, challenge = pkce_pair()
    form = _form(world, alice, challenge)
    assert form["response_type"] == "code"
    r = _post(world, "/vscode/authorize", {**form, "decision": "approve"}, _cookie(world, alice))
    assert r.status_code == 303, r.text
    answer = parse_qs(urlsplit(r.headers["location"]).query)
    metadata = world.client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert answer["iss"] == [metadata["issuer"]] == ["http://testserver"]
    assert set(answer) == {"code", "state", "iss"}


def test_sign_in_url_not_configured_gives_a_page(world: World, fake_clerk: FakeClerk) -> None:
    issuer = Issuer.from_settings(load_settings(issuer_env(world.db_url, fake_clerk)))
    try:
        client = TestClient(create_app(issuer))
        r = client.get("/dashboard/tokens", follow_redirects=False)
        assert r.status_code == 401
        assert "Sign-in required" in r.text
    finally:
        issuer.close()


def test_clerk_down_offers_personal_only(world: World, alice_orgs: dict[str, str]) -> None:
    _, challenge = pkce_pair()
    cookie = _cookie(world, alice_orgs["alice"])
    world.clerk.fail_with(503)
    try:
        r = _get(world, "/vscode/authorize?" + urlencode(_auth_query(challenge)), cookie)
    finally:
        world.clerk.fail_with(None)
    assert r.status_code == 200
    page = Page(r.text)
    assert list(page.radios()) == [""]
    assert "could not be loaded from Clerk" in page.text


# -- /vscode/authorize: POST -------------------------------------------------------------


def _form(world: World, user: str, challenge: str, sid: str = "sess_pages") -> dict[str, str]:
    page = Page(
        _get(
            world,
            "/vscode/authorize?" + urlencode(_auth_query(challenge)),
            _cookie(world, user, sid),
        ).text
    )
    return {a["name"]: a["value"] for a in page.all("input", type="hidden")}


def test_approve_with_an_org_redirects_with_a_code_that_redeems_to_an_org_token(
    world: World, alice_orgs: dict[str, str]
) -> None:
    alice, acme = alice_orgs["alice"], alice_orgs["acme"]
    verifier, challenge = pkce_pair()
    form = _form(world, alice, challenge)
    r = _post(
        world,
        "/vscode/authorize",
        {**form, "clerk_org_id": acme, "decision": "approve"},
        {**_cookie(world, alice), "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 303, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    location = r.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st-42"]
    token = world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
        },
    )
    assert token.status_code == 200, token.text
    assert token.json()["pool"] == "organization"
    claims = world.client.get(
        "/api/extension/auth/validate",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    ).json()["claims"]
    assert claims["clerk_org_id"] == acme


def test_approve_personal(world: World, alice_orgs: dict[str, str]) -> None:
    alice = alice_orgs["alice"]
    verifier, challenge = pkce_pair()
    form = _form(world, alice, challenge)
    r = _post(
        world,
        "/vscode/authorize",
        {**form, "clerk_org_id": "", "decision": "approve"},
        _cookie(world, alice),
    )
    assert r.status_code == 303
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    token = world.client.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
        },
    )
    assert token.json()["pool"] == "personal"


def test_a_forged_choice_of_a_suspended_seat_is_refused_on_the_page(
    world: World, alice_orgs: dict[str, str]
) -> None:
    alice = alice_orgs["alice"]
    _, challenge = pkce_pair()
    form = _form(world, alice, challenge)
    for org in ("globex", "hooli"):
        r = _post(
            world,
            "/vscode/authorize",
            {**form, "clerk_org_id": alice_orgs[org], "decision": "approve"},
            _cookie(world, alice),
        )
        assert r.status_code == 403
        assert "location" not in r.headers
        page = Page(r.text)
        assert "That organization cannot be used" in page.text
        assert "disabled" in page.radios()[alice_orgs[org]]


def test_deny_redirects_with_access_denied_and_the_state(
    world: World, alice_orgs: dict[str, str]
) -> None:
    alice = alice_orgs["alice"]
    _, challenge = pkce_pair()
    form = _form(world, alice, challenge)
    r = _post(world, "/vscode/authorize", {**form, "decision": "deny"}, _cookie(world, alice))
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert parse_qs(urlsplit(location).query) == {
        "error": ["access_denied"],
        "state": ["st-42"],
        "iss": ["http://testserver"],  # RFC 9207 (R1)
    }


def test_csrf_missing_forged_foreign_or_cross_site_is_refused(
    world: World, alice_orgs: dict[str, str]
) -> None:
    alice = alice_orgs["alice"]
    _, challenge = pkce_pair()
    form = _form(world, alice, challenge, sid="sess_one")
    other_session = _form(world, alice, challenge, sid="sess_two")["csrf_token"]
    cookie = _cookie(world, alice, "sess_one")
    issued, nonce, mac = form["csrf_token"].split(".")
    attempts: list[tuple[dict[str, str], dict[str, str]]] = [
        ({**form, "csrf_token": ""}, {}),
        ({**form, "csrf_token": other_session}, {}),
        ({**form, "csrf_token": f"{issued}.{nonce}.{mac[:-2]}AA"}, {}),
        ({**form, "csrf_token": f"{int(issued) + 1}.{nonce}.{mac}"}, {}),
        (form, {"Origin": "https://evil.example"}),
        (form, {"Origin": "null"}),
        (form, {"Sec-Fetch-Site": "cross-site"}),
        (form, {"Sec-Fetch-Site": "same-site"}),
    ]
    for data, extra in attempts:
        for decision in ("approve", "deny"):
            r = _post(
                world, "/vscode/authorize", {**data, "decision": decision}, {**cookie, **extra}
            )
            assert r.status_code == 403, (data, extra)
            assert "location" not in r.headers
            _assert_page_headers(r)
            assert "Request refused" in r.text
    ok = _post(world, "/vscode/authorize", {**form, "decision": "deny"}, cookie)
    assert ok.status_code == 303


def test_post_revalidates_the_client_and_the_pkce_parameters(
    world: World, alice_orgs: dict[str, str]
) -> None:
    alice = alice_orgs["alice"]
    _, challenge = pkce_pair()
    form = _form(world, alice, challenge)
    cookie = _cookie(world, alice)
    for over in ({"redirect_uri": "https://evil.example/cb"}, {"client_id": "other"}):
        for decision in ("approve", "deny"):
            r = _post(world, "/vscode/authorize", {**form, **over, "decision": decision}, cookie)
            assert r.status_code == 400
            assert "location" not in r.headers
            assert "This sign-in link is not valid" in r.text
    r = _post(
        world,
        "/vscode/authorize",
        {**form, "code_challenge_method": "plain", "decision": "approve"},
        cookie,
    )
    assert r.status_code == 400
    assert "location" not in r.headers


def test_post_without_a_session_signs_in_and_returns_to_the_page(world: World) -> None:
    _, challenge = pkce_pair()
    r = _post(world, "/vscode/authorize", {**_auth_query(challenge), "decision": "approve"}, {})
    assert r.status_code == 303
    back = parse_qs(urlsplit(r.headers["location"]).query)["redirect_url"][0]
    assert back.startswith("http://testserver/vscode/authorize?")
    assert parse_qs(urlsplit(back).query)["code_challenge"] == [challenge]


def test_csrf_tokens_expire(world: World) -> None:
    session = ClerkSession("user_x", "sess_x", None, None, None, 2)
    token = csrf_token(world.issuer, session, now=1_000_000)
    assert csrf_valid(world.issuer, session, token, now=1_000_000 + 3600)
    assert not csrf_valid(world.issuer, session, token, now=1_000_000 + 13 * 3600)
    assert not csrf_valid(world.issuer, session, token, now=1_000_000 - 3600)
    other = ClerkSession("user_x", "sess_y", None, None, None, 2)
    assert not csrf_valid(world.issuer, other, token, now=1_000_000)


# -- /dashboard/tokens ----------------------------------------------------------------


def _tokens_page(world: World, cookie: dict[str, str]) -> httpx.Response:
    r = _get(world, "/dashboard/tokens", cookie)
    assert r.status_code == 200, r.text
    _assert_page_headers(r)
    return r


def test_dashboard_lists_tokens_without_the_token(world: World, alice_orgs: dict[str, str]) -> None:
    bob = world.user(email="bob@example.com")
    world.seat(alice_orgs["acme"], bob)
    secret = world.extension_token(bob, alice_orgs["acme"])
    r = _tokens_page(world, _cookie(world, bob, "sess_bob"))
    page = Page(r.text)
    assert secret not in r.text
    text = page.text
    assert "Acme Inc" in text
    assert "never" in text, "last used"
    assert "active" in text
    # Labels for every visible control; one CSRF field per form.
    labels = {a["for"] for a in page.all("label")}
    assert "token-name" in labels and "token-expiry" in labels
    assert "token-org" in labels
    options = {a["value"]: a for a in page.all("option")}
    assert "disabled" not in options[alice_orgs["acme"]]
    assert "disabled" not in options[""]
    assert len(page.all("form")) == len(page.all("input", name="csrf_token"))


def test_generate_shows_the_token_once_then_revoke_stops_it(
    world: World, alice_orgs: dict[str, str]
) -> None:
    carol = world.user(email="carol@example.com")
    world.seat(alice_orgs["acme"], carol)
    cookie = _cookie(world, carol, "sess_carol")
    csrf = Page(_tokens_page(world, cookie).text).csrf()
    r = _post(
        world,
        "/dashboard/tokens/generate",
        {
            "csrf_token": csrf,
            "name": "laptop",
            "clerk_org_id": alice_orgs["acme"],
            "expires_in_days": "30",
        },
        cookie,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/dashboard/tokens?clerk_org_id={alice_orgs['acme']}"
    sealed = world.client.cookies.get("issuer_new_token")
    assert sealed
    set_cookie = r.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/dashboard/tokens", "max-age=120"):
        assert attribute in set_cookie
    assert not sealed.startswith("eyJ"), "the cookie holds the token encrypted, not as a JWT"
    world.client.cookies.clear()

    # Another session cannot open it.
    other = _get(
        world,
        "/dashboard/tokens",
        {"Cookie": cookie["Cookie"].replace("__session", "x") + "; issuer_new_token=" + sealed},
    )
    assert other.status_code == 303  # no session: sign in
    elsewhere = _cookie(world, carol, "sess_other")["Cookie"] + f"; issuer_new_token={sealed}"
    assert "Your new token" not in _get(world, "/dashboard/tokens", {"Cookie": elsewhere}).text

    shown = _get(
        world, "/dashboard/tokens", {"Cookie": cookie["Cookie"] + f"; issuer_new_token={sealed}"}
    )
    assert shown.status_code == 200
    assert "script-src 'self'" in shown.headers["content-security-policy"]
    assert 'issuer_new_token=""' in shown.headers["set-cookie"]
    assert "max-age=0" in shown.headers["set-cookie"].lower()
    page = Page(shown.text)
    token = page.all("input", id="new-token")[0]["value"]
    assert token.count(".") == 2
    for segment in token.split("."):  # no part of the JWT readable in the cookie
        assert segment[:16] not in sealed
    assert "readonly" in page.all("input", id="new-token")[0]
    assert page.all("button", id="copy-button")
    row_forms = page.all("input", name="token_id")
    assert len(row_forms) == 1
    token_id = row_forms[0]["value"]

    valid = world.client.get(
        "/api/extension/auth/validate", headers={"Authorization": f"Bearer {token}"}
    )
    assert valid.status_code == 200
    assert valid.json()["claims"]["clerk_org_id"] == alice_orgs["acme"]

    again = _tokens_page(world, cookie)
    assert token not in again.text
    assert "Your new token" not in again.text

    csrf = Page(again.text).csrf()
    r = _post(world, "/dashboard/tokens/revoke", {"csrf_token": csrf, "token_id": token_id}, cookie)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/tokens?notice=revoked"
    after = _get(world, r.headers["location"], cookie)
    assert "Token revoked" in after.text
    assert "revoked" in Page(after.text).text
    assert not Page(after.text).all("input", name="token_id")
    invalid = world.client.get(
        "/api/extension/auth/validate", headers={"Authorization": f"Bearer {token}"}
    )
    assert invalid.status_code == 401

    unknown = "00000000-0000-0000-0000-000000000000"
    r = _post(world, "/dashboard/tokens/revoke", {"csrf_token": csrf, "token_id": unknown}, cookie)
    assert r.headers["location"] == "/dashboard/tokens?notice=already_revoked"
    r = _post(world, "/dashboard/tokens/revoke", {"csrf_token": csrf, "token_id": "x"}, cookie)
    assert r.status_code == 400
    assert "token_id must be a uuid" in r.text


def test_generate_for_a_suspended_seat_creates_nothing(
    world: World, alice_orgs: dict[str, str]
) -> None:
    alice = alice_orgs["alice"]
    cookie = _cookie(world, alice, "sess_gen")
    before = Page(_tokens_page(world, cookie).text)
    r = _post(
        world,
        "/dashboard/tokens/generate",
        {"csrf_token": before.csrf(), "name": "x", "clerk_org_id": alice_orgs["globex"]},
        cookie,
    )
    assert r.status_code == 403
    assert "No token was created" in r.text
    assert "set-cookie" not in r.headers
    assert len(Page(r.text).all("input", name="token_id")) == len(
        before.all("input", name="token_id")
    )


def test_dashboard_forms_need_csrf(world: World, alice_orgs: dict[str, str]) -> None:
    alice = alice_orgs["alice"]
    cookie = _cookie(world, alice, "sess_csrf")
    for path, data in (
        ("/dashboard/tokens/generate", {"name": "x"}),
        ("/dashboard/tokens/revoke", {"token_id": "00000000-0000-0000-0000-000000000000"}),
    ):
        r = _post(world, path, data, cookie)
        assert r.status_code == 403
        assert "Request refused" in r.text
        csrf = Page(_tokens_page(world, cookie).text).csrf()
        r = _post(
            world, path, {**data, "csrf_token": csrf}, {**cookie, "Origin": "https://evil.example"}
        )
        assert r.status_code == 403


def test_dashboard_preselects_the_requested_org(world: World, alice_orgs: dict[str, str]) -> None:
    cookie = _cookie(world, alice_orgs["alice"])
    page = Page(_get(world, f"/dashboard/tokens?clerk_org_id={alice_orgs['acme']}", cookie).text)
    options = {a["value"]: a for a in page.all("option")}
    assert "selected" in options[alice_orgs["acme"]]
    assert "disabled" in options[alice_orgs["globex"]]
    page = Page(_get(world, f"/dashboard/tokens?clerk_org_id={alice_orgs['globex']}", cookie).text)
    options = {a["value"]: a for a in page.all("option")}
    assert "selected" in options[""]
    assert "Globex cannot be used: seat suspended" in page.text


def test_static_files(world: World) -> None:
    css = world.client.get("/static/issuer.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = world.client.get("/static/copy.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert world.client.get("/static/../app.py").status_code == 404
    assert world.client.get("/static/nothing.css").status_code == 404
