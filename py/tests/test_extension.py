"""The VS Code extension (extension/) against a real ``issuer serve``.

Like test_edge_functions.py runs the Deno tests, this module runs the
extension's own ``node --test`` suites, with a fresh database, the fake Clerk
and ``issuer serve`` (ES256, so the JWKS has a key) started here:

* ``extension.test.ts``: the extension's logic (sign-in state machine through
  the real authorization page and an RFC 8252 loopback redirect, SecretStorage,
  refresh, status text, org switch, 402 / 403 / org_scope_lost messages and
  their buttons); VS Code itself is a stand-in (test/harness.ts);
* ``interop.test.ts``: the independent libraries exactly as a client uses them
  (oauth4webapi for discovery, PKCE, refresh, revocation, the device grant and
  RFC 9068 validation; jose for the JWKS, ES256, and refusing HS256 / none / kid
  tricks).

The Node side changes the world (a seat's status) and reads balances through a
small HTTP helper served here (``ARRANGE_URL``), so every rule stays in the
database and in Python's test support. ``npm ci`` in extension/ is part of
``make setup``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from issuer.claims import TOKEN_TYPE_ACCESS, build_claims
from issuer.signing import generate_es256_jwk
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.migrations import repo_root
from issuer_dev.served import Served, issuer_serve
from support.world import CLIENT_ID, World, issuer_env

ROOT = repo_root()
EXTENSION = ROOT / "extension"
TIMEOUT = 300

SIGNING_KEYS = json.dumps({"keys": [generate_es256_jwk("ext-es256-1")]})


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not (EXTENSION / "node_modules" / ".bin" / "tsc").exists():
        pytest.fail("extension/node_modules is missing: run `make setup` (npm ci in extension/)")
    return subprocess.run(
        args,
        cwd=EXTENSION,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def node_test(file: str, env: dict[str, str]) -> str:
    """Compile (tsc, the yo-code tsconfig) and run one suite; fail on any skip or todo."""
    compiled = _run(["node_modules/.bin/tsc", "-p", "."])
    assert compiled.returncode == 0, _output(compiled)
    proc = _run(["node", "--test", "--test-reporter=spec", f"out/test/{file}"], env)
    output = _output(proc)
    assert proc.returncode == 0, output
    counts = dict(
        re.findall(r"^ℹ (tests|pass|fail|skipped|todo|cancelled) (\d+)$", proc.stdout, re.M)
    )
    assert int(counts.get("pass", "0")) > 0, output
    assert counts.get("pass") == counts.get("tests"), output
    assert counts.get("skipped") == counts.get("todo") == counts.get("cancelled") == "0", output
    return proc.stdout


class _Arrange(BaseHTTPRequestHandler):
    """POST /seat {org, user, status}; /balance {org | user}; /session {user}."""

    world: World

    def do_POST(self) -> None:
        body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        w = self.world
        answer: dict[str, Any]
        if self.path == "/seat":
            w.set_seat(body["org"], body["user"], body["status"])
            answer = {}
        elif self.path == "/balance":
            value = (
                w.pool_balance(body["org"]) if "org" in body else w.personal_balance(body["user"])
            )
            answer = {"balance": str(value)}
        elif self.path == "/session":
            answer = {"token": w.session(body["user"], exp_in=1800)}
        else:
            self.send_error(404)
            return
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def arrange_url(world: World) -> Iterator[str]:
    handler = type("Arrange", (_Arrange,), {"world": world})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def served(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    env = issuer_env(world.db_url, fake_clerk, JWT_SIGNING_KEYS=SIGNING_KEYS)
    with issuer_serve(env, tmp_path_factory.mktemp("extension-serve")) as server:
        yield server


def _base_env(world: World, served: Served, arrange_url: str) -> dict[str, str]:
    settings = world.issuer.settings
    return {
        "ISSUER_URL": served.url,
        "CLIENT_ID": CLIENT_ID,
        "JWT_ISSUER": settings.jwt_issuer,
        "JWT_AUDIENCE": settings.jwt_audience,
        "ARRANGE_URL": arrange_url,
    }


def test_extension_logic_against_issuer_serve(
    world: World, served: Served, arrange_url: str
) -> None:
    """extension/test/extension.test.ts: sign-in, refresh, status, switch, 402/403/L2."""
    alice = world.user(personal=5)
    acme = world.org(pool=10, name="Acme Inc")
    initech = world.org(pool=100, name="Initech")
    globex = world.org(pool=100, name="Globex")
    world.seat(acme, alice)
    world.seat(initech, alice)
    world.seat(globex, alice, status="suspended")
    stdout = node_test(
        "extension.test.js",
        {
            **_base_env(world, served, arrange_url),
            "ALICE": alice,
            "ACME": acme,
            "INITECH": initech,
            "GLOBEX": globex,
        },
    )
    assert "org_scope_lost" in stdout, stdout
    # 2 (replayed once) from Acme; 50 from Initech; 2 personal charges from Alice's 5.
    assert world.pool_balance(acme) == 8
    assert world.pool_balance(initech) == 50
    assert world.personal_balance(alice) == 3
    assert world.consistency_problems() == []


def test_extension_holds_around_streamed_completions(
    world: World, served: Served, arrange_url: str
) -> None:
    """extension/test/holds.test.ts: hold, capture for less, void on cancel, 402 before work (H1)."""
    hana = world.user()
    holds_co = world.org(pool=20, name="Holds Co")
    world.seat(holds_co, hana)
    node_test(
        "holds.test.js",
        {**_base_env(world, served, arrange_url), "HANA": hana, "HOLDS_CO": holds_co},
    )
    # 3.5 captured of a 10 hold; a cancelled 16.5 voided; 0 released; 2 of a 2 hold.
    assert world.pool_balance(holds_co) == Decimal("14.5")
    held = world.sql(
        "select s.held from public.organization_subscriptions as s "
        "join public.organizations as o on o.id = s.organization_id where o.clerk_org_id = %s",
        (holds_co,),
    )
    assert held == [(Decimal(0),)]
    assert world.consistency_problems() == []


def _hs256_access_token(world: World, user: str) -> str:
    """A valid HS256 access token signed with the issuer's own JWT_SECRET (world signs HS256)."""
    settings = world.issuer.settings
    claims = build_claims(
        user,
        None,
        TOKEN_TYPE_ACCESS,
        None,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=600,
    )
    token: str = world.issuer.keys.sign(claims)
    return token


def test_interop_oauth4webapi_and_jose_against_issuer_serve(
    world: World, served: Served, arrange_url: str
) -> None:
    """extension/test/interop.test.ts: discovery, PKCE + iss, refresh, revocation, device
    grant, RFC 9068 validation; jose on every token type; HS256 / none / kid tricks refused."""
    alice = world.user(personal=5)
    acme = world.org(pool=10, name="Acme Inc")
    world.seat(acme, alice)
    r = httpx.post(
        served.url + "/api/extension-token/generate",
        json={"name": "interop"},
        headers=world.clerk_auth(alice),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    node_test(
        "interop.test.js",
        {
            **_base_env(world, served, arrange_url),
            "ALICE": alice,
            "ACME": acme,
            "LONG_LIVED_TOKEN": r.json()["token"],
            "HS256_TOKEN": _hs256_access_token(world, alice),
        },
    )


def test_extension_lints_and_type_checks() -> None:
    """What `make lint` runs on extension/: tsc under the yo-code tsconfig, eslint."""
    for command in (
        ["node_modules/.bin/tsc", "-p", ".", "--noEmit"],
        ["node_modules/.bin/eslint", "src", "test"],
    ):
        proc = _run(command)
        assert proc.returncode == 0, _output(proc)


def test_extension_packages_into_a_vsix(tmp_path: Path) -> None:
    """`npm run package`: esbuild's bundle and @vscode/vsce's .vsix, with the manifest's commands."""
    proc = _run(["npm", "run", "--silent", "package"])
    assert proc.returncode == 0, _output(proc)
    vsix = EXTENSION / "dist" / "softcodes-vscode.vsix"
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("extension/package.json"))
    assert {"extension/dist/extension.cjs", "extension/package.json"} <= names, names
    assert not any("node_modules" in n or n.endswith(".ts") for n in names), names
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert commands == {
        "softcodes.signIn",
        "softcodes.signOut",
        "softcodes.switchOrganization",
        "softcodes.showCredits",
    }
    assert "softcodes.issuerUrl" in manifest["contributes"]["configuration"]["properties"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_vsce_package_without_flags_warns_about_nothing(tmp_path: Path) -> None:
    """What a marketplace user gets: `vsce package` with no flags, no warning; VS Code's conventions.

    The manifest names the repository, homepage and bug tracker, the project's
    license (MIT, as LICENSE), an icon (PNG, at least 128x128), categories
    beyond "Other", keywords, and a description for every value of each enum
    setting; the package carries LICENSE and CHANGELOG.md besides the bundle.
    """
    out = tmp_path / "plain.vsix"
    proc = _run(["node_modules/.bin/vsce", "package", "-o", str(out)])
    assert proc.returncode == 0, _output(proc)
    warnings = [
        line for line in (proc.stdout + proc.stderr).splitlines() if re.search(r"\bWARN", line)
    ]
    assert warnings == [], "\n".join(warnings)
    manifest = json.loads((EXTENSION / "package.json").read_text())
    assert manifest["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert manifest["repository"]["url"].startswith("https://")
    assert manifest["homepage"].startswith("https://")
    assert manifest["bugs"]["url"].startswith("https://")
    assert set(manifest["categories"]) - {"Other"}, manifest["categories"]
    assert len(manifest["keywords"]) >= 3
    for name, prop in manifest["contributes"]["configuration"]["properties"].items():
        if "enum" in prop:
            described = prop.get("enumDescriptions") or prop.get("markdownEnumDescriptions")
            assert described and len(described) == len(prop["enum"]), name
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        icon = archive.read(f"extension/{manifest['icon']}")
        packaged_license = archive.read("extension/LICENSE.txt").decode()
    width, height = _png_size(icon)
    assert width >= 128 and height >= 128, (width, height)
    assert packaged_license == (ROOT / "LICENSE").read_text()
    assert {"extension/changelog.md", "extension/dist/extension.cjs"} <= {
        n.lower() if n.lower().endswith(".md") else n for n in names
    }, names
    assert not any("node_modules" in n or n.endswith(".ts") for n in names), names


@pytest.mark.parametrize("where", [ROOT, EXTENSION], ids=["root", "extension"])
def test_npm_install_scripts_are_all_reviewed(where: Path) -> None:
    """npm 11 warns on every install of a dependency script not in ``allowScripts`` (npm 12 skips it).

    Each one is approved (deno, esbuild, vsce-sign: their binaries) or denied
    (keytar: only `vsce login` stores a token in the keychain) in package.json.
    """
    manifest = json.loads((where / "package.json").read_text())
    assert manifest.get("allowScripts"), "no allowScripts in package.json"
    proc = subprocess.run(
        ["npm", "install-scripts", "ls"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, _output(proc)
    assert "No packages with unreviewed install scripts" in proc.stdout, _output(proc)
