"""R2: the strictly conformant deployment profile, ``JWT_ISSUER`` = ``ISSUER_URL``.

RFC 9068 §4 has a resource server check that an access token's ``iss`` is
the ``issuer`` of the authorization server's metadata. By default the two
differ (``iss`` = ``softcodes.ai``, the seed's name; the metadata's issuer =
the public URL: docs/api.md, "Two issuers"), so a strict validator must be
told ``iss``. With the one setting of docs/operations.md ("Strict RFC 9068
profile") two independent validators accept our access tokens as they are,
against a real ``issuer serve``:

* oauth4webapi's ``validateJwtAccessToken`` with the metadata it discovered
  (py/tests/support/strict_rfc9068.mjs, run with the extension's node_modules);
* joserfc, with the JWKS from ``jwks_uri`` and RFC 9068's rules: ``typ``
  ``at+jwt``, ES256, ``iss`` = the metadata's issuer, ``aud``, and the
  required ``exp``, ``sub``, ``client_id``, ``iat``, ``jti``.

Under the default profile both refuse the same token for its ``iss`` alone.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from issuer.signing import generate_es256_jwk
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.localdb import free_port
from issuer_dev.migrations import repo_root
from issuer_dev.served import Served, issuer_serve
from support.world import World, issuer_env

EXTENSION = repo_root() / "extension"
SCRIPT = Path(__file__).parent / "support" / "strict_rfc9068.mjs"
SIGNING_KEYS = json.dumps({"keys": [generate_es256_jwk("strict-es256-1")]})


@pytest.fixture(scope="module")
def strict(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The profile: one setting, JWT_ISSUER, the same URL as the (default) ISSUER_URL."""
    port = free_port()
    env = issuer_env(
        world.db_url,
        fake_clerk,
        JWT_SIGNING_KEYS=SIGNING_KEYS,
        JWT_ISSUER=f"http://127.0.0.1:{port}",
    )
    with issuer_serve(env, tmp_path_factory.mktemp("strict"), port=port) as served:
        yield served


@pytest.fixture(scope="module")
def default(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    env = issuer_env(world.db_url, fake_clerk, JWT_SIGNING_KEYS=SIGNING_KEYS)
    with issuer_serve(env, tmp_path_factory.mktemp("default")) as served:
        yield served


def _access_token(world: World, served: Served) -> str:
    user = world.user(personal=5)
    r = httpx.post(
        served.url + "/api/auth/refresh-token", headers=world.clerk_auth(user), timeout=10
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def _oauth4webapi(served: Served, token: str, audience: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        ["node", "--input-type=module"],
        input=SCRIPT.read_text(),
        cwd=EXTENSION,
        env={**os.environ, "ISSUER_URL": served.url, "ACCESS_TOKEN": token, "AUDIENCE": audience},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def _joserfc(served: Served, token: str, audience: str) -> dict[str, Any]:
    """RFC 9068 §4 with joserfc: the metadata's issuer and jwks_uri, nothing configured."""
    metadata = httpx.get(served.url + "/.well-known/oauth-authorization-server", timeout=10).json()
    keys = KeySet.import_key_set(httpx.get(metadata["jwks_uri"], timeout=10).json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    if decoded.header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
        raise JoseError(f"typ {decoded.header.get('typ')!r} is not at+jwt")
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": metadata["issuer"]},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        sub={"essential": True},
        client_id={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    registry.validate(decoded.claims)
    return dict(decoded.claims)


def test_R2_strict_profile_oauth4webapi_and_joserfc_accept_access_tokens(
    world: World, strict: Served
) -> None:
    audience = world.issuer.settings.jwt_audience
    token = _access_token(world, strict)
    code, out = _oauth4webapi(strict, token, audience)
    assert code == 0, out
    assert out["issuer"] == strict.url and out["claims"]["iss"] == strict.url
    assert out["claims"]["client_id"]
    claims = _joserfc(strict, token, audience)
    assert claims["iss"] == strict.url
    # The issuer itself still verifies what it signed under the profile.
    r = httpx.get(
        strict.url + "/api/extension/auth/validate",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["valid"] is True, r.text


def test_R2_default_profile_strict_validators_refuse_for_iss_alone(
    world: World, default: Served
) -> None:
    audience = world.issuer.settings.jwt_audience
    token = _access_token(world, default)
    code, out = _oauth4webapi(default, token, audience)
    assert code == 1 and out["error"] == "OAUTH_JWT_CLAIM_COMPARISON_FAILED", out
    with pytest.raises(JoseError, match="iss"):
        _joserfc(default, token, audience)


EXTENSION_VERIFY = """
import { DEFAULTS, IssuerClient } from "./out/src/oauth.js";
const client = new IssuerClient({
  ...DEFAULTS, issuerUrl: process.env.ISSUER_URL, clientId: "dashboard",
  audience: process.env.AUDIENCE,
});
const claims = await client.verifyAccessToken(process.env.ACCESS_TOKEN);
console.log(JSON.stringify({ iss: claims.iss }));
"""


def test_R2_the_extension_verifies_access_tokens_under_both_profiles(
    world: World, strict: Served, default: Served
) -> None:
    """The extension's own verifier (jose): the seed's iss by default, the metadata's under the profile."""
    compiled = subprocess.run(
        ["node_modules/.bin/tsc", "-p", "."], cwd=EXTENSION, capture_output=True, timeout=300
    )
    assert compiled.returncode == 0, compiled.stdout
    audience = world.issuer.settings.jwt_audience
    for served, iss in ((strict, strict.url), (default, world.issuer.settings.jwt_issuer)):
        proc = subprocess.run(
            ["node", "--input-type=module"],
            input=EXTENSION_VERIFY,
            cwd=EXTENSION,
            env={
                **os.environ,
                "ISSUER_URL": served.url,
                "ACCESS_TOKEN": _access_token(world, served),
                "AUDIENCE": audience,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["iss"] == iss
