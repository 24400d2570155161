"""The device authorization grant (RFC 8628, R4) through a real `issuer serve`.

The extension's side is plain HTTP (device endpoint, token endpoint); the
user's side is the /vscode/device page, driven with the Clerk session cookie
and the page's own CSRF token, as a browser would. `issuer serve` runs three
workers so that concurrent polls really reach the database in parallel.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from issuer.flows.device import GRANT_TYPE, USER_CODE_ALPHABET, normalize_user_code
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import Served, issuer_serve
from support.world import CLIENT_ID, World, issuer_env

USER_CODE = re.compile(rf"^[{USER_CODE_ALPHABET}]{{4}}-[{USER_CODE_ALPHABET}]{{4}}$")


@pytest.fixture(scope="module")
def served(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    env = issuer_env(world.db_url, fake_clerk)
    with issuer_serve(env, tmp_path_factory.mktemp("device"), workers=3) as s:
        yield s


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=20) as client:
        yield client


def _start(http: httpx.Client, client_id: str = CLIENT_ID) -> dict[str, Any]:
    r = http.post("/api/extension/auth/device", data={"client_id": client_id})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def _poll(http: httpx.Client, device_code: str, **extra: str) -> httpx.Response:
    return http.post(
        "/api/extension/auth/token",
        data={
            "grant_type": GRANT_TYPE,
            "device_code": device_code,
            "client_id": CLIENT_ID,
            **extra,
        },
    )


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} on the page"
    return match.group(1)


def _decide(
    world: World,
    http: httpx.Client,
    user: str,
    user_code: str,
    decision: str = "approve",
    org: str = "",
    email: str | None = None,
    open_with_code: bool = True,
) -> httpx.Response:
    """What the user does in the browser: open the page, enter the code, pick, answer.

    ``open_with_code``: the page is opened from ``verification_uri_complete``
    (the code prefilled and previewed, R6; a wrong one is a guess there too),
    else from ``verification_uri`` and the code typed in.
    """
    cookies = {"__session": world.session(user, session_id=f"sess_{user}", email=email)}
    params = {"user_code": user_code} if open_with_code else {}
    page = http.get("/vscode/device", params=params, cookies=cookies)
    assert page.status_code in (200, 400, 429), page.text  # 400/429: the preview refused it
    if open_with_code:
        assert 'value="' + user_code + '"' in page.text  # verification_uri_complete prefills it
    return http.post(
        "/vscode/device",
        data={
            "csrf_token": _hidden(page.text, "csrf_token"),
            "user_code": user_code,
            "clerk_org_id": org,
            "decision": decision,
        },
        cookies=cookies,
        headers={"Origin": http.base_url.scheme + "://" + http.base_url.netloc.decode()},
    )


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


def test_R4_device_authorization_is_advertised_and_answers_rfc8628(
    served: Served, http: httpx.Client
) -> None:
    metadata = http.get("/.well-known/oauth-authorization-server").json()
    assert metadata["device_authorization_endpoint"] == served.url + "/api/extension/auth/device"
    assert GRANT_TYPE in metadata["grant_types_supported"]
    started = _start(http)
    assert set(started) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert USER_CODE.match(started["user_code"]), started["user_code"]
    assert started["verification_uri"] == served.url + "/vscode/device"
    assert started["verification_uri_complete"] == (
        f"{served.url}/vscode/device?user_code={started['user_code']}"
    )
    assert (started["expires_in"], started["interval"]) == (600, 5)
    assert started["device_code"].startswith("dc_") and len(started["device_code"]) > 40
    # JSON works as well as a form.
    r = http.post("/api/extension/auth/device", json={"client_id": CLIENT_ID})
    assert r.status_code == 200
    for data in ({"client_id": "unknown"}, {}):
        r = http.post("/api/extension/auth/device", data=data)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), data


def test_R4_pending_slow_down_then_approve_with_an_org(world: World, http: httpx.Client) -> None:
    org = world.org(pool=10, name="Device Org")
    alice = world.user(email="alice@device.test")
    world.seat(org, alice, role="admin")
    started = _start(http)
    r = _poll(http, started["device_code"])
    assert (r.status_code, r.json()["error"]) == (400, "authorization_pending"), r.text
    r = _poll(http, started["device_code"])  # at once, not after the interval
    assert (r.status_code, r.json()["error"]) == (400, "slow_down"), r.text
    assert r.json()["interval"] == 10  # RFC 8628 §3.5: 5 seconds more
    # The user types the code in lower case without the dash: still the code.
    typed = started["user_code"].replace("-", "").lower()
    r = _decide(world, http, alice, typed, org=org, email="alice@device.test")
    assert r.status_code == 200, r.text
    assert "VS Code is signed in" in r.text and "Device Org" in r.text
    r = _poll(http, started["device_code"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pool"] == "organization" and body["token_type"] == "Bearer"
    assert r.headers["cache-control"] == "no-store"
    claims = _claims(body["access_token"])
    assert claims["clerk_org_id"] == org and claims["client_id"] == CLIENT_ID
    assert claims["email"] == "alice@device.test"
    # The refresh token it came with rotates like any other.
    r = http.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": CLIENT_ID,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["pool"] == "organization"
    # Redeemed once: the next poll is invalid_grant.
    r = _poll(http, started["device_code"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


def test_R4_deny_is_access_denied(world: World, http: httpx.Client) -> None:
    bob = world.user()
    started = _start(http)
    r = _decide(world, http, bob, started["user_code"], decision="deny")
    assert r.status_code == 200 and "Sign-in denied" in r.text
    r = _poll(http, started["device_code"])
    assert (r.status_code, r.json()["error"]) == (400, "access_denied")
    # The code is spent: approving it now is refused on the page.
    r = _decide(world, http, bob, started["user_code"])
    assert r.status_code == 400 and "already used" in r.text


def test_R4_expired_code_is_expired_token(world: World, http: httpx.Client) -> None:
    carol = world.user()
    started = _start(http)
    world.sql(
        "update public.device_codes set created_at = created_at - interval '11 minutes', "
        "expires_at = now() - interval '1 second' where status = 'pending'"
    )
    r = _poll(http, started["device_code"])
    assert (r.status_code, r.json()["error"]) == (400, "expired_token")
    r = _decide(world, http, carol, started["user_code"])
    assert r.status_code == 400 and "expired" in r.text


def test_R4_approved_code_is_redeemed_once_under_10_concurrent_polls(
    world: World, http: httpx.Client, served: Served
) -> None:
    dave = world.user(personal=5)
    started = _start(http)
    assert _decide(world, http, dave, started["user_code"]).status_code == 200

    def poll(_: int) -> httpx.Response:
        with httpx.Client(base_url=served.url, timeout=20) as own:
            return _poll(own, started["device_code"])

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(poll, range(10)))
    assert sorted(r.status_code for r in results) == [200] + [400] * 9
    assert {r.json()["error"] for r in results if r.status_code == 400} == {"invalid_grant"}
    winner = next(r for r in results if r.status_code == 200).json()
    assert winner["pool"] == "personal"
    assert _claims(winner["access_token"])["sub"] == dave
    stored = world.sql(
        "select count(*) from public.refresh_tokens where clerk_user_id = %s", (dave,)
    )
    assert stored == [(1,)]  # one grant, one refresh-token family


def test_R4_the_org_choice_is_seat_gated_and_a_refusal_keeps_the_code(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10, name="Suspended Org")
    erin = world.user()
    world.seat(org, erin, status="suspended")
    started = _start(http)
    r = _decide(world, http, erin, started["user_code"], org=org)
    assert r.status_code == 403 and "That organization cannot be used" in r.text
    assert _poll(http, started["device_code"]).json()["error"] == "authorization_pending"
    r = _decide(world, http, erin, started["user_code"])  # Personal
    assert r.status_code == 200, r.text
    r = _poll(http, started["device_code"])
    assert r.status_code == 200 and r.json()["pool"] == "personal"


def test_R4_wrong_user_codes_are_bounded_per_user(world: World, http: httpx.Client) -> None:
    frank, grace = world.user(), world.user()
    started = _start(http)
    wrong = "BBBB-BBBB" if normalize_user_code(started["user_code"]) != "BBBBBBBB" else "CCCC-CCCC"
    for _ in range(10):
        r = _decide(world, http, frank, wrong, open_with_code=False)
        assert r.status_code == 400 and "not valid" in r.text
    r = _decide(world, http, frank, started["user_code"], open_with_code=False)
    assert r.status_code == 429 and "Too many wrong codes" in r.text
    r = _decide(world, http, frank, "not a code")  # malformed: not a guess, no lookup
    assert r.status_code == 400
    assert _decide(world, http, grace, started["user_code"]).status_code == 200


def test_R4_the_page_needs_a_session_and_a_csrf_token(
    world: World, http: httpx.Client, served: Served
) -> None:
    r = http.get("/vscode/device", params={"user_code": "BCDF-GHJK"})
    assert r.status_code == 401 and "Sign-in required" in r.text  # no CLERK_SIGN_IN_URL here
    henry = world.user()
    started = _start(http)
    cookies = {"__session": world.session(henry, session_id="sess_henry")}
    r = http.post(
        "/vscode/device",
        data={"user_code": started["user_code"], "decision": "approve", "csrf_token": "x"},
        cookies=cookies,
    )
    assert r.status_code == 403
    r = http.post(
        "/vscode/device",
        data={"user_code": started["user_code"], "decision": "approve"},
        cookies=cookies,
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert _poll(http, started["device_code"]).json()["error"] == "authorization_pending"


def test_L2_R4_a_device_family_keeps_the_scope_granted_not_the_one_asked_for(
    world: World, http: httpx.Client
) -> None:
    """A personal approval stays a personal family, whatever the seat does later.

    Before the device grant shared start_family with the code exchange, its
    family stored the org *asked for*: the refresh of this personal session
    answered org_scope_lost, and once the seat came back a refresh would have
    switched the payer to the org without the user choosing it (L2). Since R5
    a poll cannot even ask for another org (test_R5_* below).
    """
    org = world.org(pool=10, name="Held Org")
    carol = world.user(personal=5, email="carol@device.test")
    world.seat(org, carol, status="suspended")
    started = _start(http)
    assert _decide(world, http, carol, started["user_code"]).status_code == 200  # personal
    r = _poll(http, started["device_code"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pool"] == "personal" and body.get("org_scope_denied") is None
    refresh_token = body["refresh_token"]
    for _ in range(2):
        r = http.post(
            "/api/extension/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": CLIENT_ID,
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["pool"] == "personal"
        assert _claims(r.json()["access_token"])["clerk_org_id"] is None
        refresh_token = r.json()["refresh_token"]
        world.set_seat(org, carol, "active")  # the seat coming back changes no payer


def test_R5_a_device_code_approved_personal_never_polls_into_an_org_token(
    world: World, http: httpx.Client
) -> None:
    org = world.org(pool=10, name="R5 Org")
    ruth = world.user(email="ruth@device.test")
    world.seat(org, ruth)
    started = _start(http)
    r = _decide(world, http, ruth, started["user_code"], org="", email="ruth@device.test")
    assert r.status_code == 200 and "your personal credits" in r.text, r.text
    r = _poll(http, started["device_code"], clerk_org_id=org)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant"), r.text
    assert r.json()["error_description"].startswith("payer_mismatch"), r.text
    # Approved for the org: polling with that org, or with none, gives the org token.
    started = _start(http)
    r = _decide(world, http, ruth, started["user_code"], org=org, email="ruth@device.test")
    assert r.status_code == 200, r.text
    r = _poll(http, started["device_code"])
    assert r.status_code == 200 and r.json()["pool"] == "organization", r.text


def test_R6_the_prefilled_page_names_the_client_and_when_the_code_was_made(
    world: World, http: httpx.Client
) -> None:
    ivy = world.user()
    started = _start(http)
    cookies = {"__session": world.session(ivy, session_id=f"sess_{ivy}")}
    page = http.get("/vscode/device", params={"user_code": started["user_code"]}, cookies=cookies)
    assert page.status_code == 200, page.text
    assert f"requested by <strong>{CLIENT_ID}</strong>" in page.text, page.text
    assert re.search(r'<time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC, ', page.text)
    # A wrong prefilled code names nothing, and is a guess like a wrong decision.
    wrong = "BBBB-BBBB" if normalize_user_code(started["user_code"]) != "BBBBBBBB" else "CCCC-CCCC"
    page = http.get("/vscode/device", params={"user_code": wrong}, cookies=cookies)
    assert page.status_code == 400 and "requested by" not in page.text
    assert world.sql(
        "select failures from public.device_code_attempts where clerk_user_id = %s", (ivy,)
    ) == [(1,)]


def test_R6_device_code_creation_is_throttled(world: World, http: httpx.Client) -> None:
    """Last in this module: it uses up the minute's budget of CLIENT_ID, then gives it back."""
    try:
        answers = [
            http.post("/api/extension/auth/device", data={"client_id": CLIENT_ID})
            for _ in range(40)
        ]
        codes = [r.status_code for r in answers]
        assert 429 in codes and codes.count(200) <= 30, codes
        refused = answers[codes.index(429)]
        assert refused.json()["error"] == "slow_down"
        assert refused.headers["retry-after"] == "60"
    finally:
        world.sql(
            "update public.device_codes set created_at = created_at - interval '2 minutes' "
            "where created_at > now() - interval '1 minute'"
        )
