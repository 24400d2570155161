"""Issue 16 P2: several issuer processes against one database.

Real ``issuer serve`` processes on loopback: two separate processes on two
ports (requests alternate between them), and one ``--workers 2`` process
(the kernel spreads connections over its workers). They share the database,
``JWT_SECRET`` and the ``JWT_SIGNING_KEYS`` file, as instances of one
deployment do. What one process does, the other must honour: the dashboard's
CSRF token and sealed new-token cookie, a code redeemed once, a refresh token
rotated once, and a key promoted with ``issuer keys promote`` signing
everywhere within ``KEY_FILE_CHECK_INTERVAL`` seconds.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from issuer.signing import KEY_FILE_CHECK_INTERVAL, generate_es256_jwk
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import Served, issuer_serve
from support.world import CLIENT_ID, REDIRECT_URI, World, issuer_env, pkce_pair

CONCURRENT = 8


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    # k1 signs; k2 is published (verifies), waiting to be promoted.
    path.write_text(json.dumps({"keys": [generate_es256_jwk("k1"), generate_es256_jwk("k2")]}))
    return path


@pytest.fixture(scope="module")
def processes(
    world: World,
    fake_clerk: FakeClerk,
    keys_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Served]]:
    env = issuer_env(world.db_url, fake_clerk, JWT_SIGNING_KEYS=str(keys_file))
    logs = tmp_path_factory.mktemp("serve")
    with ExitStack() as stack:
        yield {
            "a": stack.enter_context(issuer_serve(env, logs)),
            "b": stack.enter_context(issuer_serve(env, logs)),
            "workers": stack.enter_context(issuer_serve(env, logs, workers=2)),
        }


#: Which processes answer the alternating requests: two processes, or one
#: process with two workers.
TOPOLOGIES = {"two_processes": ("a", "b"), "two_workers": ("workers", "workers")}


@pytest.fixture(params=list(TOPOLOGIES))
def pair(request: pytest.FixtureRequest, processes: dict[str, Served]) -> tuple[str, str]:
    first, second = TOPOLOGIES[request.param]
    return processes[first].url, processes[second].url


def _session_cookie(world: World, user: str, sid: str) -> dict[str, str]:
    return {"Cookie": f"__session={world.session(user, session_id=sid)}"}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def test_P2_csrf_and_sealed_new_token_cookie_open_on_the_other_process(
    world: World, pair: tuple[str, str]
) -> None:
    one, other = pair
    org = world.org(pool=10, name="Sealed Inc")
    alice = world.user()
    world.seat(org, alice, role="owner")
    cookie = _session_cookie(world, alice, "sess_p2_seal")
    page = httpx.get(one + "/dashboard/tokens", headers=cookie)
    assert page.status_code == 200, page.text
    # The CSRF token of one process's form is accepted by the other.
    r = httpx.post(
        other + "/dashboard/tokens/generate",
        data={"csrf_token": _csrf(page.text), "name": "laptop", "clerk_org_id": org},
        headers=cookie,
    )
    assert r.status_code == 303, r.text
    sealed = r.cookies.get("issuer_new_token")
    assert sealed and not sealed.startswith("eyJ")
    # The cookie sealed by the other process opens on this one: the token shows once.
    shown = httpx.get(
        one + "/dashboard/tokens?clerk_org_id=" + org,
        headers={"Cookie": cookie["Cookie"] + "; issuer_new_token=" + sealed},
    )
    assert shown.status_code == 200, shown.text
    match = re.search(r'id="new-token" value="([^"]+)"', shown.text)
    assert match, "the sealed token was not opened"
    token = match.group(1)
    # ... and works on the process that minted it.
    usage = httpx.post(
        other + "/api/extension/usage",
        json={"amount": 1, "description": "p2"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert usage.status_code == 200, usage.text


def _code(world: World, url: str, org: str, user: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    r = httpx.post(
        url + "/api/auth/complete-vscode-auth",
        json={
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "state": "p2",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "clerk_org_id": org,
        },
        headers=world.clerk_auth(user),
    )
    assert r.status_code == 200, r.text
    return r.json()["code"], verifier


def _alternating(pair: tuple[str, str], data: dict[str, str]) -> Counter[int]:
    def post(i: int) -> int:
        url = pair[i % 2] + "/api/extension/auth/token"
        return httpx.post(url, data=data, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        return Counter(pool.map(post, range(CONCURRENT)))


def test_P2_code_minted_on_one_is_redeemed_once_across_both(
    world: World, pair: tuple[str, str]
) -> None:
    org = world.org(pool=10)
    alice = world.user()
    world.seat(org, alice)
    code, verifier = _code(world, pair[0], org, alice)
    statuses = _alternating(
        pair,
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
        },
    )
    assert statuses == Counter({200: 1, 400: CONCURRENT - 1})


def test_P2_refresh_rotation_has_one_winner_across_both(
    world: World, pair: tuple[str, str]
) -> None:
    org = world.org(pool=10)
    alice = world.user()
    world.seat(org, alice)
    code, verifier = _code(world, pair[0], org, alice)
    r = httpx.post(
        pair[1] + "/api/extension/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
        },
    )
    assert r.status_code == 200, r.text
    statuses = _alternating(
        pair,
        {
            "grant_type": "refresh_token",
            "refresh_token": r.json()["refresh_token"],
            "client_id": CLIENT_ID,
        },
    )
    assert statuses == Counter({200: 1, 400: CONCURRENT - 1})


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _mint(world: World, url: str, user: str, org: str) -> str:
    # A new connection each time, so a --workers process spreads them.
    r = httpx.post(
        url + "/api/extension-token/generate",
        json={"name": "p2", "clerk_org_id": org},
        headers=world.clerk_auth(user),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def test_P2_key_promotion_reaches_every_process_within_the_check_interval(
    world: World, processes: dict[str, Served], keys_file: Path
) -> None:
    org = world.org(pool=100)
    alice = world.user()
    world.seat(org, alice)
    urls = [served.url for served in processes.values()]
    assert {_kid(_mint(world, url, alice, org)) for url in urls for _ in range(2)} == {"k1"}

    exe = str(Path(sys.executable).parent / "issuer")
    promote = subprocess.run(
        [exe, "keys", "promote", "k2", "--file", str(keys_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert promote.returncode == 0, promote.stderr
    promoted_at = time.monotonic()

    # Each process looked at the file last at most KEY_FILE_CHECK_INTERVAL
    # seconds ago, so from then on its first signing looks again: every
    # token minted after the interval carries k2, on every process and worker.
    time.sleep(max(0.0, promoted_at + KEY_FILE_CHECK_INTERVAL + 0.5 - time.monotonic()))
    # A k2 token from one process is accepted by the others.
    for url in urls:
        for _ in range(6):
            token = _mint(world, url, alice, org)
            assert _kid(token) == "k2"
        for verifier in urls:
            usage = httpx.post(
                verifier + "/api/extension/usage",
                json={"amount": 1, "description": "p2 rotation"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert usage.status_code == 200, usage.text
        jwks = httpx.get(url + "/.well-known/jwks.json").json()
        assert {key["kid"] for key in jwks["keys"]} == {"k1", "k2"}
