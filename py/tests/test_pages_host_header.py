"""L11: absolute URLs come from ISSUER_URL, never from the Host header.

A request with ``Host: evil.test`` (or ``X-Forwarded-Host``) must not put
``evil.test`` into the sign-in ``redirect_url`` of any page, nor into the
device endpoint's ``verification_uri``; ``issuer serve`` on a non-loopback
address without ISSUER_URL stops at start-up instead of guessing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.localdb import free_port
from support.world import CLIENT_ID, REDIRECT_URI, World, make_world

SIGN_IN = "https://accounts.example.test/sign-in"
ISSUER_URL = "https://issuer.example.test"
EVIL = {"Host": "evil.test", "X-Forwarded-Host": "evil.test"}


@pytest.fixture(scope="module")
def world(db_url: str, fake_clerk: FakeClerk) -> Iterator[World]:
    w = make_world(db_url, fake_clerk, CLERK_SIGN_IN_URL=SIGN_IN, ISSUER_URL=ISSUER_URL)
    try:
        yield w
    finally:
        w.close()
        w.issuer.close()


def _redirect_url(location: str) -> str:
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == SIGN_IN, location
    (back,) = parse_qs(parts.query)["redirect_url"]
    return back


AUTHORIZE = {
    "response_type": "code",
    "client_id": CLIENT_ID,
    "redirect_uri": REDIRECT_URI,
    "state": "st",
    "code_challenge": "A" * 43,
    "code_challenge_method": "S256",
}
AUTHORIZE_QUERY = urlencode(AUTHORIZE)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/vscode/authorize?" + AUTHORIZE_QUERY, "/vscode/authorize?" + AUTHORIZE_QUERY),
        ("GET", "/vscode/device?user_code=BCDF-GHJK", "/vscode/device?user_code=BCDF-GHJK"),
        ("POST", "/vscode/device", "/vscode/device?user_code=BCDFGHJK"),
        ("POST", "/vscode/authorize", "/vscode/authorize?"),
        ("GET", "/dashboard/tokens", "/dashboard/tokens"),
        ("GET", "/dashboard/caps", "/dashboard/caps"),
        ("POST", "/dashboard/tokens/generate", "/dashboard/tokens"),
        ("POST", "/dashboard/caps/seat", "/dashboard/caps"),
    ],
)
def test_L11_sign_in_redirect_url_is_built_on_issuer_url_whatever_the_host(
    world: World, method: str, path: str, expected: str
) -> None:
    data = {"user_code": "BCDFGHJK", **AUTHORIZE} if method == "POST" else None
    r = world.client.request(method, path, headers=EVIL, data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    back = _redirect_url(r.headers["location"])
    assert "evil.test" not in back
    assert back.startswith(ISSUER_URL + expected), back


def test_L11_device_verification_uri_is_built_on_issuer_url(world: World) -> None:
    r = world.client.post("/api/extension/auth/device", data={"client_id": CLIENT_ID}, headers=EVIL)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verification_uri"] == ISSUER_URL + "/vscode/device"
    assert body["verification_uri_complete"].startswith(ISSUER_URL + "/vscode/device?user_code=")


def test_L11_serve_on_a_public_address_without_issuer_url_stops_at_start_up(
    tmp_path: Path,
) -> None:
    """Without ISSUER_URL the only source of the public URL would be the Host header."""
    env = {k: v for k, v in os.environ.items() if k not in ("ISSUER_URL", "DATABASE_URL")}
    env["JWT_SECRET"] = "s" * 32
    exe = Path(sys.executable).parent / "issuer"
    run = subprocess.run(
        [str(exe), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode != 0, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("error: ISSUER_URL: required"), lines[0]
