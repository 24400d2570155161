"""The integrator docs run: every example in them is executed here.

* docs/extension-integration.md includes excerpts of the extension's own
  sources (extension/src), checked here; the extension itself is tested by
  test_extension.py and test_real_vscode.py;
* docs/examples/backend: the FastAPI backend (imported and driven), and the
  Node/Deno backend's Deno tests against the PostgREST double;
* docs/*.md: every fenced block is classified by the HTML comment on the line
  before it, and this module checks or runs it (see "the code blocks of the
  docs" below); a block without a marker fails the suite, so no example can
  be added unrun. docs/api.md's curl examples run against ``issuer serve``,
  and its lists of tests per route are checked against py/tests.

After changing an example file or adding a test that requests a route, copy
the changes into the docs with ``.venv/bin/python py/tests/test_docs_examples.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from issuer.errors import ConfigError, DatabaseUnavailable, InvalidToken
from issuer.integrations.fastapi import TokenClaimsDep, TokenVerifier
from issuer.rpc import Rpc
from issuer.signing import generate_es256_jwk
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.localdb import free_port
from issuer_dev.migrations import repo_root
from issuer_dev.served import Served, issuer_serve
from support.postgrest_double import running_postgrest_double
from support.world import (
    CLIENT_ID,
    JWT_SECRET,
    REDIRECT_URI,
    World,
    issuer_env,
    pkce_pair,
    pkce_sign_in,
)

ROOT = repo_root()
DENO = ROOT / "node_modules" / ".bin" / "deno"
EXAMPLES = ROOT / "docs" / "examples"
CONFIG = EXAMPLES / "deno.json"
DENO_TIMEOUT = 600  # the first run may fetch npm packages into .local/deno

SIGNING_KEYS = json.dumps({"keys": [generate_es256_jwk("docs-es256-1")]})
"""The served issuer signs ES256 (so the JWKS has a key); JWT_SECRET still verifies HS256.

Since L12 that needs ``JWT_ACCEPT_HS256=true`` (the documented migration
window): the docs' examples show both kinds of token.
"""
ES256_AND_HS256 = {"JWT_SIGNING_KEYS": SIGNING_KEYS, "JWT_ACCEPT_HS256": "true"}
"""The signing settings above, for the served issuer and the verifier examples alike."""


# -- helpers -----------------------------------------------------------------------


def _deno_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        **os.environ,
        "DENO_DIR": str(ROOT / ".local" / "deno"),
        "NO_COLOR": "1",
        "DENO_NO_UPDATE_CHECK": "1",
    }
    env.update(extra)
    return env


def _deno(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not DENO.exists():
        pytest.fail(f"{DENO} is missing: run `npm ci` (make setup installs it)")
    return subprocess.run(
        [str(DENO), *args],
        cwd=ROOT,
        env=env or _deno_env({}),
        capture_output=True,
        text=True,
        timeout=DENO_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _deno_test(path: Path, env: dict[str, str]) -> str:
    proc = _deno(
        "test",
        "--frozen",
        "--config",
        str(CONFIG.relative_to(ROOT)),
        "--allow-net",
        "--allow-env",
        "--allow-read",
        str(path.relative_to(ROOT)),
        env=_deno_env(env),
    )
    output = _output(proc)
    assert proc.returncode == 0, output
    summary = [line for line in proc.stdout.splitlines() if re.match(r"^ok \| \d+ passed", line)]
    assert summary, output
    assert not re.search(r"[1-9]\d* ignored", summary[-1]), (
        f"some Deno tests were ignored\n{output}"
    )
    return proc.stdout


def _sign_in(world: World, user: str, org: str | None) -> dict[str, Any]:
    """PKCE sign-in through the in-process app: {access_token, refresh_token, ...}."""
    return pkce_sign_in(world.client, world, user, org)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    env = issuer_env(world.db_url, fake_clerk, **ES256_AND_HS256)
    with issuer_serve(env, tmp_path_factory.mktemp("docs-serve")) as server:
        yield server


# -- docs/examples: lint, format, types ------------------------------------------------------


def test_examples_lint_format_and_type_check() -> None:
    """What `make lint` runs on docs/examples (deno lint, deno fmt), plus `deno check` and
    ruff for the Python example."""
    for args in (("lint", "docs/examples"), ("fmt", "--check", "docs/examples")):
        proc = _deno(*args)
        assert proc.returncode == 0, _output(proc)
    modules = sorted(str(p.relative_to(ROOT)) for p in EXAMPLES.rglob("*.ts"))
    proc = _deno("check", "--frozen", "--config", str(CONFIG.relative_to(ROOT)), *modules)
    assert proc.returncode == 0, _output(proc)
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in ([ruff, "check", str(EXAMPLES)], [ruff, "format", "--check", str(EXAMPLES)]):
        ran = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        assert ran.returncode == 0, _output(ran)


# -- docs/examples/backend ---------------------------------------------------------------


def _long_lived(world: World, user: str) -> tuple[str, str]:
    r = world.client.post(
        "/api/extension-token/generate", json={"name": "docs"}, headers=world.clerk_auth(user)
    )
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["token_id"]


def _serve_ts_answers(supabase_url: str, key: str, issuer_url: str, token: str) -> None:
    """docs/examples/backend/serve.ts as its header says to run it: one request."""
    port = free_port()
    env = _deno_env(
        {
            "SUPABASE_URL": supabase_url,
            "SUPABASE_SERVICE_ROLE_KEY": key,
            "ISSUER_URL": issuer_url,
            "JWT_SECRET": JWT_SECRET,
            "PORT": str(port),
        }
    )
    command = [str(DENO), "run", "--frozen", "--config", str(CONFIG), "--allow-net", "--allow-env"]
    proc = subprocess.Popen(
        [*command, str(EXAMPLES / "backend" / "serve.ts")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"serve.ts exited: {proc.stdout.read() if proc.stdout else ''!r}"
                )
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{port}/summaries",
                    json={"text": "served"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=5,
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert (r.status_code, r.json()["pool"]) == (200, "personal"), r.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_node_deno_backend_with_supabase_js(world: World, served: Served) -> None:
    """docs/examples/backend/usage_handler_test.ts: supabase-js over PostgREST (the double)."""
    org = world.org(pool=10, name="Initech")
    poor_org = world.org(pool=1, name="Hooli")
    carol = world.user(personal=5)
    world.seat(org, carol)
    world.seat(poor_org, carol)
    dave = world.user()
    world.seat(org, dave)
    seatless = _sign_in(world, dave, org)["access_token"]
    world.set_seat(org, dave, "suspended")
    long_lived, _ = _long_lived(world, carol)
    revoked, revoked_id = _long_lived(world, carol)
    r = world.client.post(
        "/api/extension-token/revoke",
        json={"token_id": revoked_id},
        headers=world.clerk_auth(carol),
    )
    assert r.status_code == 204, r.text

    key = secrets.token_urlsafe(32)
    settings = world.issuer.settings
    with running_postgrest_double(world.db_url, key) as postgrest:
        _deno_test(
            EXAMPLES / "backend" / "usage_handler_test.ts",
            {
                "SUPABASE_URL": postgrest.url,
                "SUPABASE_SERVICE_ROLE_KEY": key,
                "ISSUER_URL": served.url,
                "JWT_SECRET": JWT_SECRET,
                "JWT_ISSUER": settings.jwt_issuer,
                "JWT_AUDIENCE": settings.jwt_audience,
                "CLIENT_ID": CLIENT_ID,
                "REDIRECT_URI": REDIRECT_URI,
                "CLERK_SESSION_TOKEN": world.session(carol, exp_in=600),
                "ORG_ID": org,
                "POOR_ORG_ID": poor_org,
                "POOR_ORG_NAME": "Hooli",
                "LONG_LIVED_TOKEN": long_lived,
                "REVOKED_LONG_LIVED_TOKEN": revoked,
                "SEATLESS_ACCESS_TOKEN": seatless,
            },
        )
        _serve_ts_answers(postgrest.url, key, served.url, long_lived)
    assert "deduct_credits_pooled" in postgrest.calls
    assert "validate_extension_token" in postgrest.calls
    assert world.pool_balance(org) == 7  # two charges of 1.5, one of them replayed once
    assert world.pool_balance(poor_org) == 1
    assert world.personal_balance(carol) == 2  # 1.5 in the Deno tests, 1.5 through serve.ts
    assert world.consistency_problems() == []


def _load_example(relative: str) -> ModuleType:
    """Import an example file the way its guide says to run it (it is not a package)."""
    path = ROOT / relative
    name = "docs_example_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _served_sign_in(served: Served, world: World, user: str, org: str) -> str:
    """An org access token from the SERVED issuer (ES256, with a kid)."""
    verifier, challenge = pkce_pair()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        r = http.post(
            "/api/auth/complete-vscode-auth",
            json={
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "state": "py",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "clerk_org_id": org,
            },
            headers=world.clerk_auth(user),
        )
        assert r.status_code == 200, r.text
        r = http.post(
            "/api/extension/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": r.json()["code"],
                "code_verifier": verifier,
                "redirect_uri": REDIRECT_URI,
                "client_id": CLIENT_ID,
            },
        )
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token


VERIFIER_ENV = {"JWT_SECRET": JWT_SECRET, **ES256_AND_HS256}


@dataclass
class PyBackend:
    client: TestClient
    org: str
    poor_org: str
    erin: str
    tokens: dict[str, str]

    def post(self, token: str | None, body: Any = None, **headers: str) -> httpx.Response:
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        response: httpx.Response = self.client.post(
            "/summaries", json=body or {"text": "hello"}, headers=sent
        )
        return response


@pytest.fixture(scope="module")
def fastapi_example() -> ModuleType:
    return _load_example("docs/examples/backend/fastapi_backend.py")


@pytest.fixture(scope="module")
def py_backend(world: World, served: Served, fastapi_example: ModuleType) -> Iterator[PyBackend]:
    org = world.org(pool=10, name="Umbrella")
    poor_org = world.org(pool=1, name="Tyrell")
    erin = world.user(personal=6)
    world.seat(org, erin)
    world.seat(poor_org, erin)
    frank = world.user()
    world.seat(org, frank)
    seatless = _sign_in(world, frank, org)["access_token"]
    world.set_seat(org, frank, "suspended")
    long_lived, _ = _long_lived(world, erin)
    revoked, revoked_id = _long_lived(world, erin)
    r = world.client.post(
        "/api/extension-token/revoke", json={"token_id": revoked_id}, headers=world.clerk_auth(erin)
    )
    assert r.status_code == 204, r.text
    r = world.client.post("/api/dashboard-token/generate", json={}, headers=world.clerk_auth(erin))
    assert r.status_code == 200, r.text
    tokens = {
        "org": _served_sign_in(served, world, erin, org),
        "poor_org": _served_sign_in(served, world, erin, poor_org),
        "personal": r.json()["token"],
        "long_lived": long_lived,
        "revoked": revoked,
        "seatless": seatless,
    }
    verifier = TokenVerifier.from_env(VERIFIER_ENV, rpc=world.issuer.rpc)
    app = fastapi_example.create_app(verifier, world.issuer.rpc)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield PyBackend(client, org, poor_org, erin, tokens)


def test_fastapi_backend_spends_the_pool_the_token_names(
    world: World, py_backend: PyBackend
) -> None:
    b = py_backend
    # An org token (ES256 from `issuer serve`): the org pool, whatever the body says.
    r = b.post(b.tokens["org"], {"text": "hello", "clerk_org_id": b.poor_org})
    assert r.status_code == 200, r.text
    assert r.json()["pool"] == "organization"
    assert r.json()["remaining"] == "8.5000"
    # A personal access token (HS256) and a personal long-lived token: personal credits.
    for name in ("personal", "long_lived"):
        r = b.post(b.tokens[name])
        assert (r.status_code, r.json()["pool"]) == (200, "personal"), r.text
    assert world.pool_balance(b.org) == Decimal("8.5")
    assert world.pool_balance(b.poor_org) == 1
    assert world.personal_balance(b.erin) == 3


def test_fastapi_backend_maps_refusals_and_errors(world: World, py_backend: PyBackend) -> None:
    b = py_backend
    r = b.post(b.tokens["poor_org"])
    assert r.status_code == 402
    assert r.json() == {
        "error": "insufficient_credits",
        "pool": "organization",
        "organization_name": "Tyrell",
    }
    # L5: the verifier re-checks the seat and refuses a lost org scope before the
    # route runs (the deduction's own no_active_seat stays as the second line).
    r = b.post(b.tokens["seatless"])
    assert r.status_code == 403
    assert r.json()["error"] == "org_scope_lost"
    assert r.json()["reason"] == "no_active_seat"

    key = secrets.token_hex(8)
    first = b.post(b.tokens["org"], {"text": "same"}, Idempotency_Key=key)
    again = b.post(b.tokens["org"], {"text": "same"}, Idempotency_Key=key)
    other = b.post(b.tokens["org"], {"text": "other text"}, Idempotency_Key=key)
    assert (first.status_code, again.status_code, again.json()["replayed"]) == (200, 200, True)
    assert (other.status_code, other.json()["error"]) == (409, "idempotency_key_reused")

    r = b.post(b.tokens["org"], Idempotency_Key="")  # the database refuses it: 22023
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request"), r.text
    assert "p_idempotency_key" in r.json()["error_description"]

    for token in (None, "not-a-token", b.tokens["revoked"]):
        r = b.post(token)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_token"), r.text
        # RFC 6750 §3.1 (R3): no error code when no credentials were sent.
        challenge = "Bearer" if token is None else 'Bearer error="invalid_token"'
        assert r.headers["WWW-Authenticate"] == challenge
    assert world.consistency_problems() == []


def test_fastapi_backend_503_when_the_database_is_down(
    py_backend: PyBackend, fastapi_example: ModuleType
) -> None:
    class Down:
        def call(self, fn: str, params: dict[str, Any], *, composite: bool = False) -> Any:
            raise DatabaseUnavailable("database unavailable")

        def ping(self) -> bool:
            return False

        def close(self) -> None:
            return None

    down = Rpc(Down())
    app = fastapi_example.create_app(TokenVerifier.from_env(VERIFIER_ENV), down)
    with TestClient(app) as client:
        r = client.post(
            "/summaries",
            json={"text": "x"},
            headers={"Authorization": f"Bearer {py_backend.tokens['personal']}"},
        )
    assert (r.status_code, r.json()["error"], r.headers["Retry-After"]) == (
        503,
        "database_unavailable",
        "1",
    )


def test_fastapi_backend_from_env(
    world: World,
    py_backend: PyBackend,
    fastapi_example: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`uvicorn --factory fastapi_backend:app_from_env` as the docstring says."""
    for name, value in {**VERIFIER_ENV, "DATABASE_URL": world.db_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    app = fastapi_example.app_from_env()
    with TestClient(app) as client:
        r = client.post(
            "/summaries",
            json={"text": "x"},
            headers={"Authorization": f"Bearer {py_backend.tokens['long_lived']}"},
        )
    assert (r.status_code, r.json()["pool"]) == (200, "personal"), r.text


# -- issuer.integrations.fastapi -----------------------------------------------------------


def test_token_verifier_reads_only_the_jwt_variables() -> None:
    verifier = TokenVerifier.from_env({**VERIFIER_ENV, "DATABASE_URL": "not a url"})
    assert verifier.accepted_types == ("access",)
    with pytest.raises(ConfigError) as err:
        TokenVerifier.from_env({"JWT_SECRET": "short"})
    assert err.value.variable == "JWT_SECRET"
    with pytest.raises(ConfigError) as err:
        TokenVerifier.from_env({})
    assert err.value.variable == "JWT_SECRET"


def test_token_verifier_without_rpc_refuses_long_lived_tokens(py_backend: PyBackend) -> None:
    verifier = TokenVerifier.from_env(VERIFIER_ENV)
    assert verifier.verify(py_backend.tokens["org"]).pool == "organization"
    with pytest.raises(InvalidToken) as err:
        verifier.verify(py_backend.tokens["long_lived"])
    assert err.value.reason == "wrong_type"


def test_require_token_without_install_is_a_clear_error() -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/me")
    def me(claims: TokenClaimsDep) -> dict[str, str]:
        return {"sub": claims.sub}

    with TestClient(app, raise_server_exceptions=True) as client:
        with pytest.raises(RuntimeError, match="install"):
            client.get("/me", headers={"Authorization": "Bearer x"})


# -- the code blocks of the docs --------------------------------------------------------
#
# Each fenced block is preceded (on the line before its opening fence) by a marker:
#
#   <!-- include: PATH -->          the block is the file PATH (in the repository) ...
#   <!-- include: PATH#REGION -->   ... or its region (`# region: NAME` / `// #region NAME`
#                                   to the next `endregion`), verbatim. The files are run above.
#   <!-- run: python -->            executed by the venv's Python, cwd = repository root;
#   <!-- run: sh -->                executed by bash -euo pipefail;
#   <!-- run: curl expect=NNN -->   (docs/api.md) bash against `issuer serve`; the HTTP status
#                                   of the last curl must be NNN.
#   <!-- output -->                 the exact stdout of the run block just before it.
#   <!-- check: claims -->          a decoded token: issuer.claims.validate_claims accepts it.
#   <!-- not run: REASON -->        not an example (a diagram, a response body, an editor API).

DOCS = ("architecture.md", "extension-integration.md", "backend-integration.md", "api.md")
_MARKER = re.compile(r"^<!--\s*(include|run|output|check|not run):?\s*(.*?)\s*-->$")
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    kind: str
    arg: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_blocks(doc: str) -> list[Block]:
    """Every fenced block of docs/DOC with the marker on the line before it."""
    lines = (ROOT / "docs" / doc).read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, closing = i, fence.group(1)
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith(closing):
            body.append(lines[i])
            i += 1
        i += 1
        marker = _MARKER.match(lines[start - 1].strip()) if start else None
        kind, arg = (marker.group(1), marker.group(2)) if marker else ("", "")
        blocks.append(Block(doc, start + 1, fence.group(2), kind, arg, "\n".join(body) + "\n"))
    return blocks


ALL_BLOCKS = [block for doc in DOCS if (ROOT / "docs" / doc).exists() for block in doc_blocks(doc)]


def _region(path: Path, name: str | None) -> str:
    text = path.read_text()
    if name is None:
        return text
    start = re.compile(rf"^\s*(#|//) ?#?region:? {re.escape(name)}\s*$")
    end = re.compile(r"^\s*(#|//) ?#?endregion\b")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if start.match(line):
            for j in range(i + 1, len(lines)):
                if end.match(lines[j]):
                    return "\n".join(lines[i + 1 : j]) + "\n"
    raise AssertionError(f"no region {name!r} in {path}")


def test_every_block_in_the_docs_is_marked_and_every_example_is_used() -> None:
    assert {b.doc for b in ALL_BLOCKS} == set(DOCS), "a doc is missing"
    unmarked = [b.id for b in ALL_BLOCKS if not b.kind]
    assert not unmarked, f"code blocks without a marker (see this module): {unmarked}"
    outputs = [i for i, b in enumerate(ALL_BLOCKS) if b.kind == "output"]
    for i in outputs:
        assert i > 0 and ALL_BLOCKS[i - 1].kind == "run", f"{ALL_BLOCKS[i].id}: output of what?"
    docs_text = "\n".join((ROOT / "docs" / doc).read_text() for doc in DOCS)
    named = set(re.findall(r"`((?:py|docs|supabase|sql)/[\w./-]+)`", docs_text))
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"the docs name files that do not exist: {missing}"
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file() and path.suffix in {".ts", ".py"}:
            relative = str(path.relative_to(ROOT))
            assert relative in docs_text, f"{relative} is not shown or linked by any guide"


@pytest.mark.parametrize(
    "block", [b for b in ALL_BLOCKS if b.kind == "include"], ids=lambda b: b.id
)
def test_included_blocks_are_the_example_files(block: Block) -> None:
    path, _, region = block.arg.partition("#")
    expected = _region(ROOT / path, region or None)
    assert block.text == expected, f"{block.id} differs from {block.arg}: copy it again"


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.kind == "check"], ids=lambda b: b.id)
def test_claim_examples_follow_the_schema(block: Block) -> None:
    from issuer.claims import validate_claims

    assert block.arg == "claims", block.arg
    validate_claims(json.loads(block.text))


def _expected_output(block: Block) -> str | None:
    i = ALL_BLOCKS.index(block)
    if i + 1 < len(ALL_BLOCKS) and ALL_BLOCKS[i + 1].kind == "output":
        return ALL_BLOCKS[i + 1].text
    return None


@pytest.fixture(scope="module")
def doc_env(world: World) -> dict[str, str]:
    """What the Python and shell blocks may read: a database with a seeded seat."""
    org = world.org(pool=100, name="Docs Org")
    user = world.user(personal=10)
    world.seat(org, user)
    r = world.client.post(
        "/api/dashboard-token/generate", json={"clerk_org_id": org}, headers=world.clerk_auth(user)
    )
    assert r.status_code == 200, r.text
    return {
        "DATABASE_URL": world.db_url,
        "ORG_ID": org,
        "USER_ID": user,
        "JWT_SECRET": JWT_SECRET,
        "TOKEN": r.json()["token"],
    }


RUN_BLOCKS = [b for b in ALL_BLOCKS if b.kind == "run" and b.arg in {"python", "sh"}]


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.id)
def test_python_and_shell_blocks_run(block: Block, doc_env: dict[str, str]) -> None:
    command = (
        [sys.executable, "-c", block.text]
        if block.arg == "python"
        else ["bash", "-euo", "pipefail", "-c", block.text]
    )
    proc = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **doc_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id}\n{proc.stdout}\n{proc.stderr}"
    expected = _expected_output(block)
    if expected is not None:
        assert proc.stdout == expected, f"{block.id}: the output shown differs\n{proc.stdout}"


# -- docs/api.md: every route, its curl example, its tests -------------------------------

_ROUTE_HEADING = re.compile(r"^### (GET|POST|PUT|PATCH|DELETE) (/\S*)$")
_TESTS_LINE = "**Tests:**"
CURL_TEST = "test_docs_examples.py::test_api_curl_example"


def api_routes_documented() -> list[tuple[str, str, int]]:
    """(method, path, line) of every `### METHOD /path` heading in docs/api.md."""
    lines = (ROOT / "docs" / "api.md").read_text().splitlines()
    return [
        (m.group(1), m.group(2), n)
        for n, line in enumerate(lines, 1)
        if (m := _ROUTE_HEADING.match(line))
    ]


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD aside)."""
    from issuer.api.app import create_app

    def walk(routes: Any) -> Iterator[tuple[str, str]]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes)
                continue
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if path and methods:
                yield from ((method, path) for method in methods if method != "HEAD")

    return set(walk(create_app(None).routes))


def _path_pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^}]+\}", path)
    body = r"[\w.-]+".join(re.escape(part) for part in parts)
    return re.compile(body + r"(?![-/\w])")


_VERB = re.compile(r"\.(get|post|put|patch|delete|head)\(")


def _route_refs(source: str, routes: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The routes a piece of test code requests: `client.post("/x")` names POST /x; a
    path without a call next to it (a URL for a browser, a constant) names every method."""
    found: set[tuple[str, str]] = set()
    for method, path in routes:
        for match in _path_pattern(path).finditer(source):
            before = source[max(0, match.start() - 80) : match.start()]
            verbs = list(_VERB.finditer(before))
            verb = verbs[-1] if verbs and ")" not in before[verbs[-1].end() :] else None
            if verb is None or verb.group(1).upper() == method:
                found.add((method, path))
    return found


_SUPPORT_HELPERS = {
    "extension_token": {("POST", "/api/extension-token/generate")},
    "approve_pkce": {("POST", "/api/auth/complete-vscode-auth")},
    "pkce_sign_in": {
        ("POST", "/api/auth/complete-vscode-auth"),
        ("POST", "/api/extension/auth/token"),
    },
}
"""support/world.py helpers that request a route for the test."""

_OTHER_SERVERS = {"test_clerk.py"}
"""Test files whose paths are another server's (the fake Clerk's /.well-known/jwks.json)."""


def route_tests() -> dict[tuple[str, str], list[str]]:
    """For each documented route, the tests (`file::function`) that request it, directly
    or through a helper function of their module; the curl examples cover every route."""
    routes = [(m, p) for m, p, _ in api_routes_documented()]
    covered: dict[tuple[str, str], set[str]] = {route: {CURL_TEST} for route in routes}
    for file in sorted((ROOT / "py" / "tests").glob("test_*.py")):
        if file.name in _OTHER_SERVERS:
            continue
        source = file.read_text()
        tree = ast.parse(source)
        helpers: dict[str, set[tuple[str, str]]] = {}
        for node in ast.walk(tree):
            if isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef
            ) and not node.name.startswith("test"):
                helper_text = ast.get_source_segment(source, node) or ""
                helpers[node.name] = _route_refs(helper_text, routes).union(
                    *(_SUPPORT_HELPERS.get(n, set()) for n in re.findall(r"\b(\w+)\(", helper_text))
                )
        helpers.update(_SUPPORT_HELPERS)
        # A helper that calls a helper requests its routes too (to a fixpoint).
        calls = {
            node.name: set(re.findall(r"\b(\w+)\(", ast.get_source_segment(source, node) or ""))
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and not node.name.startswith("test")
        }
        changed = True
        while changed:
            changed = False
            for name, called in calls.items():
                more = set().union(*(helpers.get(c, set()) for c in called if c != name))
                if not more <= helpers[name]:
                    helpers[name] |= more
                    changed = True
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test") or node.name == "test_api_curl_example":
                continue
            text = (ast.get_source_segment(source, node) or "") + "".join(
                ast.get_source_segment(source, d) or "" for d in node.decorator_list
            )
            hits = _route_refs(text, routes)
            names = set(re.findall(r"\b(\w+)\(", text)) | {a.arg for a in node.args.args}
            for name in names:
                hits |= helpers.get(name, set())
            for route in hits:
                covered[route].add(f"{file.name}::{node.name}")
    return {route: sorted(tests) for route, tests in covered.items()}


def _tests_line(tests: list[str]) -> str:
    return _TESTS_LINE + " " + ", ".join(f"`{t}`" for t in tests)


def documented_tests() -> dict[tuple[str, str], str]:
    lines = (ROOT / "docs" / "api.md").read_text().splitlines()
    found: dict[tuple[str, str], str] = {}
    route: tuple[str, str] | None = None
    for line in lines:
        if m := _ROUTE_HEADING.match(line):
            route = (m.group(1), m.group(2))
        elif line.startswith("#"):
            route = None
        elif route and line.startswith(_TESTS_LINE):
            found[route] = line
    return found


def sync_api_tests() -> bool:
    """Rewrite the **Tests:** line of every route in docs/api.md."""
    path = ROOT / "docs" / "api.md"
    wanted = route_tests()
    lines = path.read_text().splitlines()
    route: tuple[str, str] | None = None
    for n, line in enumerate(lines):
        if m := _ROUTE_HEADING.match(line):
            route = (m.group(1), m.group(2))
        elif line.startswith("#"):
            route = None
        elif route and line.startswith(_TESTS_LINE):
            lines[n] = _tests_line(wanted[route])
    text = "\n".join(lines) + "\n"
    changed = text != path.read_text()
    if changed:
        path.write_text(text)
    return changed


SYNC = "run `.venv/bin/python py/tests/test_docs_examples.py` to update the docs"


def test_api_md_documents_every_route_the_app_serves() -> None:
    documented = [(m, p) for m, p, _ in api_routes_documented()]
    assert len(documented) == len(set(documented)), "a route is documented twice"
    missing = app_routes() - set(documented)
    assert not missing, f"routes without a section in docs/api.md: {sorted(missing)}"
    gone = set(documented) - app_routes()
    assert not gone, f"docs/api.md documents routes the app does not serve: {sorted(gone)}"
    sections = (ROOT / "docs" / "api.md").read_text().split("\n### ")[1:]
    for section in sections:
        assert "<!-- run: curl expect=" in section, f"no curl example for {section.splitlines()[0]}"


def test_api_md_names_the_tests_of_every_route() -> None:
    """Every route names at least one test, and every test named exists and calls it.

    A new test that calls a route does not fail this check (the list may lag);
    a listed test that was renamed or no longer calls the route does. Refresh
    the lists with the command in SYNC.
    """
    lines = documented_tests()
    for route, tests in route_tests().items():
        assert route in lines, f"{route}: no **Tests:** line"
        listed = set(re.findall(r"`([^`]+::[^`]+)`", lines[route]))
        assert listed, f"{route}: no test named; {SYNC}"
        stale = listed - set(tests)
        assert not stale, f"{route}: named tests that do not call it: {sorted(stale)}; {SYNC}"


def test_api_md_lists_every_error_code() -> None:
    import issuer.api.app
    import issuer.rpc
    from issuer.errors import IssuerError
    from issuer.flows.holds import HOLD_REFUSAL_STATUS
    from issuer.flows.usage import REFUSAL_STATUS

    def subclasses(cls: type[IssuerError]) -> Iterator[type[IssuerError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    codes = {cls.code for cls in subclasses(IssuerError)} | set(REFUSAL_STATUS)
    codes |= set(HOLD_REFUSAL_STATUS) - {"hold_not_yours"}  # told as hold_not_found
    codes |= {"idempotency_key_reused", "request_too_large", "method_not_allowed", "http_error"}
    codes |= {IssuerError.code}
    assert issuer.rpc.RpcConflict.code == "conflict"
    table = (ROOT / "docs" / "api.md").read_text().split("| `error` | HTTP | when |")[1]
    table = table.split("\n\n")[0]
    missing = sorted(code for code in codes if f"| `{code}` |" not in table)
    assert not missing, f"error codes missing from docs/api.md: {missing}"


@dataclass
class CurlWorld:
    served: Served
    world: World
    org: str
    user: str

    def env(self) -> dict[str, str]:
        """Fresh values for one example: codes are single use, tokens get revoked."""
        w, user, org = self.world, self.user, self.org
        # Each example makes a device code; R6 allows 30 a minute per client.
        # Drop the earlier ones (each example makes its own) so ~50 examples in
        # a few seconds stay under it.
        w.sql("delete from public.device_codes")
        verifier, challenge = pkce_pair()
        r = w.client.post(
            "/api/auth/complete-vscode-auth",
            json={
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "state": "curl",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "clerk_org_id": org,
            },
            headers=w.clerk_auth(user),
        )
        assert r.status_code == 200, r.text
        tokens = _sign_in(w, user, org)
        long_lived, token_id = _long_lived(w, user)
        device = w.client.post("/api/extension/auth/device", data={"client_id": CLIENT_ID})
        assert device.status_code == 200, device.text
        return {
            "ISSUER": self.served.url,
            "CLERK_SESSION": w.session(user, exp_in=600),
            "ORG_ID": org,
            "CLIENT_ID": CLIENT_ID,
            "REDIRECT_URI": REDIRECT_URI,
            "CODE_VERIFIER": verifier,
            "CODE_CHALLENGE": challenge,
            "CODE": r.json()["code"],
            "ACCESS_TOKEN": tokens["access_token"],
            "REFRESH_TOKEN": tokens["refresh_token"],
            "LONG_LIVED_TOKEN": long_lived,
            "TOKEN_ID": token_id,
            "DEVICE_CODE": device.json()["device_code"],
            "USER_CODE": device.json()["user_code"],
        }


@pytest.fixture(scope="module")
def curl_world(world: World, served: Served) -> CurlWorld:
    org = world.org(pool=1000, name="Curl Examples Inc")
    user = world.user(personal=10)
    world.seat(org, user, role="admin")
    return CurlWorld(served, world, org, user)


def _api_section(block: Block) -> tuple[str, str]:
    lines = (ROOT / "docs" / "api.md").read_text().splitlines()[: block.line]
    for line in reversed(lines):
        if m := _ROUTE_HEADING.match(line):
            return m.group(1), m.group(2)
    raise AssertionError(f"{block.id}: a curl example outside a route section")


CURL_BLOCKS = [b for b in ALL_BLOCKS if b.kind == "run" and b.arg.startswith("curl")]

_STATUS_WRAPPER = "curl() { command curl -w '\\n%{http_code}\\n' \"$@\"; }\n"


@pytest.mark.parametrize(
    "block", CURL_BLOCKS, ids=lambda b: "{} {}".format(*_api_section(b)) + f" ({b.line})"
)
def test_api_curl_example(block: Block, curl_world: CurlWorld) -> None:
    route = _api_section(block)
    assert route in app_routes(), f"{route} is documented but not served"
    expect = re.fullmatch(r"curl expect=(\d{3})", block.arg)
    assert expect, f"{block.id}: write <!-- run: curl expect=NNN -->"
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _STATUS_WRAPPER + block.text],
        cwd=ROOT,
        env={**os.environ, **curl_world.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    shown = f"{block.id}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, shown
    status = proc.stdout.rstrip().rsplit("\n", 1)[-1]
    assert status == expect.group(1), shown


# -- keeping the docs in step ----------------------------------------------------------


def sync_includes(doc: str) -> bool:
    """Rewrite every include block of docs/DOC from its file; True when something changed."""
    path = ROOT / "docs" / doc
    lines = path.read_text().splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        marker = _MARKER.match(lines[i].strip())
        fence = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if marker and marker.group(1) == "include" and fence:
            source, _, region = marker.group(2).partition("#")
            out.append(lines[i + 1])
            out.extend(_region(ROOT / source, region or None).splitlines())
            i += 2
            while not lines[i].startswith(fence.group(1)):
                i += 1
            out.append(lines[i])
        i += 1
    text = "\n".join(out) + "\n"
    changed = text != path.read_text()
    if changed:
        path.write_text(text)
    return changed


if __name__ == "__main__":
    # `.venv/bin/python py/tests/test_docs_examples.py`: copy the examples into the docs.
    for name in DOCS:
        if (ROOT / "docs" / name).exists() and sync_includes(name):
            print(f"docs/{name}: include blocks updated")
    if sync_api_tests():
        print("docs/api.md: the tests of the routes updated")
