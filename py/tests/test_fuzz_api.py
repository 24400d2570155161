"""F4: malformed and hostile HTTP input never yields a 500 and never hangs.

* schemathesis (4.x Python API) generates requests from the OpenAPI document
  the real `issuer serve` process serves, positive and negative, without
  auth, with a valid long-lived token of ours and with a valid Clerk session:
  no 5xx, no timeout.
* Hand-written hostile input against the same process: oversized bodies (413,
  also chunked) and headers (431 from the app, 400 from uvicorn's parser over
  16 KB), deep JSON, invalid UTF-8, huge numbers, SQL (and NUL bytes, lone
  surrogates) in every string field and in the Idempotency-Key, tokens with
  forged headers (alg none, HS256 signed with a public key, jku/x5u/jwk,
  huge or hostile kid): answered 4xx, balances unchanged, nothing fetched.

Every request has a timeout; a hang is a failure, not a stuck suite.
"""

from __future__ import annotations

import base64
import hmac
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from issuer.api import models
from issuer.api.app import MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_JSON_DEPTH
from issuer.signing import generate_es256_jwk
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import Served, issuer_serve
from support.world import World, issuer_env, make_world

pytestmark = pytest.mark.timeout(180)

#: Examples per operation (each runs one of 6 strategies: 2 modes x 3 auths).
EXAMPLES = 30
TIMEOUT = 10.0
PERSONAL = 1_000_000

SQL = [
    "'; drop table public.users; --",
    "' or '1'='1",
    '" or 1=1 --',
    "1; select pg_sleep(30); --",
    "$$; select 1; $$",
    "org_x' union select clerk_user_id from public.users --",
    "\\x27\\x00",
    "a\u0000b",  # NUL: Postgres text cannot hold it
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "\u202e\U0001f4a9" * 10,
    "x" * 10_000,
]


@pytest.fixture(scope="module")
def served(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with issuer_serve(issuer_env(world.db_url, fake_clerk), tmp_path_factory.mktemp("f4")) as s:
        yield s


class Auth:
    def __init__(self, world: World) -> None:
        self.world = world
        self.user = world.user(personal=PERSONAL)
        self.ours = world.extension_token(self.user)
        self.clerk = world.session(self.user, exp_in=900)

    def fresh(self) -> str:
        return self.world.extension_token(self.user)


@pytest.fixture(scope="module")
def auth(world: World) -> Auth:
    return Auth(world)


def _http(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, timeout=TIMEOUT)


def _no_5xx(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"


# -- the OpenAPI document -----------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _dangling(doc: dict[str, Any]) -> set[str]:
    known = set(doc.get("components", {}).get("schemas", {}))
    prefix = "#/components/schemas/"
    return {r[len(prefix) :] for r in _refs(doc) if r.startswith(prefix)} - known


def _served_openapi(served: Served) -> dict[str, Any]:
    """The served document; schemas it names but lacks are added from issuer.api.models."""
    doc: dict[str, Any] = httpx.get(served.url + "/openapi.json", timeout=TIMEOUT).json()
    for name in _dangling(doc):
        model = getattr(models, name)
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        doc["components"]["schemas"].update(schema.pop("$defs", {}))
        doc["components"]["schemas"][name] = schema
    return doc


def test_F4_openapi_document_has_no_dangling_refs(served: Served) -> None:
    doc = httpx.get(served.url + "/openapi.json", timeout=TIMEOUT).json()
    assert not _dangling(doc), "the served OpenAPI refers to undefined schemas"


# -- schemathesis ------------------------------------------------------------------


def _fuzz(
    served: Served,
    auth: Auth,
    label: str,
    strategy: st.SearchStrategy[Any],
    failures: list[str],
    statuses: Counter[int],
    unsendable: list[str],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        headers = case.headers or {}
        if case.path == "/api/extension-token/refresh" and headers.get("Authorization") == (
            f"Bearer {auth.ours}"
        ):
            # Refreshing revokes the token: give each example one of its own.
            case.headers["Authorization"] = f"Bearer {auth.fresh()}"
        try:
            r = case.call(base_url=served.url, timeout=TIMEOUT)
        except requests.Timeout:
            failures.append(f"{label}: no answer in {TIMEOUT}s: {case.as_curl_command()}")
            return
        except requests.ConnectionError as exc:
            failures.append(f"{label}: connection error {exc}: {case.as_curl_command()}")
            return
        except (requests.RequestException, UnicodeError, ValueError) as exc:
            unsendable.append(f"{label}: {type(exc).__name__}")  # the client refused
            return
        statuses[r.status_code] += 1
        if r.status_code >= 500:
            failures.append(
                f"{label}: {r.status_code} {r.content[:200]!r}: {case.as_curl_command()}"
            )

    run()


def test_F4_schemathesis_finds_no_5xx(world: World, served: Served, auth: Auth) -> None:
    schema = schemathesis.openapi.from_dict(_served_openapi(served))
    variants: list[dict[str, str] | None] = [
        None,
        {"Authorization": f"Bearer {auth.ours}"},
        {"Authorization": f"Bearer {auth.clerk}"},
    ]
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    unsendable: list[str] = []
    operations = 0
    t0 = time.monotonic()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        op = result.ok()
        operations += 1
        strategy = st.one_of(
            [
                op.as_strategy(generation_mode=mode, headers=headers)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                for headers in variants
            ]
        )
        label = f"{op.method.upper()} {op.path}"
        _fuzz(served, auth, label, strategy, failures, statuses, unsendable)
    elapsed = time.monotonic() - t0
    assert served.process.poll() is None
    assert failures == [], "\n".join(failures[:10])
    total = sum(statuses.values())
    assert operations >= 15 and total >= operations * EXAMPLES // 2, (operations, total)
    assert world.consistency_problems() == []
    print(
        f"\nF4 schemathesis: {operations} operations, {total} requests in {elapsed:.1f} s "
        f"(+{len(unsendable)} the HTTP client refused to send): "
        + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
        + "; 0 x 5xx, 0 timeouts"
    )


# -- size limits -------------------------------------------------------------------

POSTS = [
    "/api/extension/usage",
    "/api/extension-token/generate",
    "/api/extension-token/refresh",
    "/api/extension-token/revoke",
    "/api/auth/refresh-token",
    "/api/dashboard-token/generate",
    "/api/auth/complete-vscode-auth",
    "/api/extension/auth/token",
    "/api/extension/auth/revoke",
]


def test_F4_oversized_bodies_are_413_also_when_chunked(served: Served, auth: Auth) -> None:
    big = b'{"a": "' + b"x" * MAX_BODY_BYTES + b'"}'

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096

    with _http(served) as http:
        for path in POSTS:
            headers = {"Authorization": f"Bearer {auth.ours}", "Content-Type": "application/json"}
            r = http.post(path, content=big, headers=headers)
            assert r.status_code == 413, (path, r.status_code, r.text)
            assert r.json()["error"] == "request_too_large"
            r = http.post(path, content=chunks(), headers=headers)  # no Content-Length
            assert r.status_code == 413, (path, r.status_code, r.text)
            form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
            r = http.post(path, content=chunks(), headers=form)
            assert r.status_code == 413, (path, r.status_code, r.text)


def test_F4_oversized_headers_are_refused(served: Served, auth: Auth) -> None:
    over_app = MAX_HEADER_BYTES + 500  # under uvicorn's 16 KB: the app answers 431
    with _http(served) as http:
        for path in ("/api/extension/auth/validate", "/healthz"):
            r = http.get(path, headers={"X-Big": "a" * over_app})
            assert r.status_code == 431, (path, r.status_code, r.text)
            assert r.json()["error"] == "request_header_fields_too_large"
            r = http.get(path, headers={"Authorization": "Bearer " + "a" * over_app})
            assert r.status_code == 431
            many = {f"X-H{i}": "v" * 40 for i in range(over_app // 45)}
            assert http.get(path, headers=many).status_code == 431
            # Over 16 KB: the parser may refuse the head (400), else the app's 431.
            r = http.get(path, headers={"X-Big": "a" * 20_000})
            assert r.status_code in (400, 431), r.status_code
            r = http.get(path, params={"q": "a" * 9_000})
            assert r.status_code == 414, r.status_code
            assert r.json()["error"] == "uri_too_long"
            r = http.get(path, params={"q": "a" * 20_000})
            assert r.status_code in (400, 414), r.status_code
        # Still serving normally afterwards.
        r = http.get(
            "/api/extension/auth/validate", headers={"Authorization": f"Bearer {auth.ours}"}
        )
        assert r.status_code == 200 and r.json()["valid"] is True


def test_F4_an_endless_request_head_is_cut_off(served: Served) -> None:
    """A head sent in 1 KB pieces and never finished: 400 once past 16 KB, connection closed.

    httptools alone has no such limit; issuer.api.http_protocol adds it.
    """
    host, port = served.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for i in range(200):  # 200 KB if nothing stops it
            try:
                sock.sendall(f"X-Pad-{i}: {'a' * 1000}\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            sock.settimeout(0.05)
            try:
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            if answer:
                break
        sock.settimeout(TIMEOUT)
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert 16 <= sent <= 40, sent  # refused soon after 16 KB, not at 200 KB
    with _http(served) as http:  # the server is fine
        assert http.get("/healthz").status_code == 200


# -- malformed bodies --------------------------------------------------------------


def test_F4_deep_json_invalid_utf8_and_garbage_are_4xx(
    world: World, served: Served, auth: Auth
) -> None:
    deep_array = b"[" * 20_000 + b"]" * 20_000
    deep_object = b'{"amount": 1, "description": "x", "context": ' + (
        b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}"
    )
    just_over = b'{"amount": 1, "description": "x", "context": ' + (
        b'{"a": ' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH + b"}"
    )
    bodies: list[tuple[bytes, str]] = [
        (deep_array, "application/json"),
        (deep_object, "application/json"),
        (just_over, "application/json"),
        (deep_array, ""),
        (b'{"amount": 1, "description": "\xff\xfe\xfd"}', "application/json"),
        (b'{"grant_type": "\xc3\x28", "token": "\xed\xa0\x80"}', "application/json"),
        (
            b"grant_type=%ff%fe&code=\xff&refresh_token=\xc3\x28",
            "application/x-www-form-urlencoded",
        ),
        (b"\x00\x01\x02\x03", "application/json"),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b"[]", "application/json"),
        (b'"a string"', "application/json"),
        (b"1" * 5000, "application/json"),  # over Python's int digit limit
        (b'{"a": 1e999999}', "application/json"),
        (b'{"amount": 1, "amount": 2, "description": "dup"}', "application/json"),
        (b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--", "multipart/form-data"),
        (b"<xml/>", "application/xml"),
    ]
    before = world.personal_balance(auth.user)
    seen: Counter[int] = Counter()
    with _http(served) as http:
        for path in POSTS:
            for body, ctype in bodies:
                token = auth.fresh() if path == "/api/extension-token/refresh" else auth.ours
                headers = {"Authorization": f"Bearer {token}"}
                if ctype:
                    headers["Content-Type"] = ctype
                r = http.post(path, content=body, headers=headers)
                _no_5xx(r, f"{path} {body[:40]!r} {ctype}")
                seen[r.status_code] += 1
        # Invalid bytes in header values.
        for raw in (b"Bearer \xff\xfe", b"\xc3\x28", b"Bearer a\x7fb"):
            r = http.get("/api/extension/auth/validate", headers={b"Authorization": raw})
            # DEL is not a legal header byte (RFC 9110 field-vchar): the parser
            # (httptools) refuses the request with 400 before the app sees it.
            assert r.status_code == (400 if b"\x7f" in raw else 401), r.text
            r = http.post(
                "/api/extension/usage",
                json={"amount": 1, "description": "x"},
                headers={b"Authorization": f"Bearer {auth.ours}".encode(), b"Idempotency-Key": raw},
            )
            _no_5xx(r, f"Idempotency-Key {raw!r}")
    # Only the duplicate-key body may have charged (JSON takes the last "amount").
    assert world.personal_balance(auth.user) >= before - 10
    assert world.consistency_problems() == []
    print(f"\nF4 malformed bodies: {sum(seen.values())} requests: {dict(sorted(seen.items()))}")


def test_F4_huge_and_odd_numbers_are_400_and_charge_nothing(
    world: World, served: Served, auth: Auth
) -> None:
    amounts: list[Any] = [
        1e308,
        -1e308,
        10**30,
        "1e999999999",
        "-0",
        "0E-1000",
        "1e-400",
        "0.00001",
        "NaN",
        "-Infinity",
        "sNaN",
        "1" * 400,
        "0x10",
        "1 000",
        "1,5",
        [],
        {},
        None,
    ]
    before = world.personal_balance(auth.user)
    with _http(served) as http:
        for amount in amounts:
            r = http.post(
                "/api/extension/usage",
                json={"amount": amount, "description": "huge"},
                headers={"Authorization": f"Bearer {auth.ours}"},
            )
            assert r.status_code == 400, (amount, r.status_code, r.text)
        raw = b'{"amount": 1' + b"0" * 4400 + b', "description": "x"}'
        r = http.post(
            "/api/extension/usage",
            content=raw,
            headers={"Authorization": f"Bearer {auth.ours}", "Content-Type": "application/json"},
        )
        assert r.status_code == 400, r.text
        for days in (10**30, 1e308, -1, 0, "1e3", 365.5, "NaN"):
            r = http.post(
                "/api/extension-token/generate",
                json={"expires_in_days": days},
                headers={"Authorization": f"Bearer {auth.clerk}"},
            )
            assert r.status_code == 400, (days, r.status_code, r.text)
    assert world.personal_balance(auth.user) == before


def _string_fields(schema: dict[str, Any], ref: str) -> list[str]:
    props = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("properties", {})
    names = []
    for name, spec in props.items():
        kinds = [spec.get("type")] + [s.get("type") for s in spec.get("anyOf", [])]
        if "string" in kinds:
            names.append(name)
    return names


def test_F4_sql_and_hostile_strings_in_every_string_field(
    world: World, served: Served, auth: Auth
) -> None:
    doc = _served_openapi(served)
    targets: list[tuple[str, str, list[str]]] = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
            for ref in filter(None, refs):
                targets.append((method, path, _string_fields(doc, ref)))
    # The token and revoke endpoints read forms or JSON themselves; their
    # schemas are inline, so name the revoke body's string fields here.
    targets.append(("post", "/api/extension/auth/revoke", ["token", "token_type_hint"]))
    assert len(targets) >= 8
    before = world.personal_balance(auth.user)
    charged = 0
    statuses: Counter[int] = Counter()
    with _http(served) as http:
        for method, path, fields in targets:
            base: dict[str, Any] = {"amount": 1} if path == "/api/extension/usage" else {}
            for field in fields:
                for payload in SQL:
                    # Clerk session for the dashboard routes, our token for the rest.
                    token = (
                        auth.clerk
                        if path.startswith(("/api/dashboard", "/api/auth/"))
                        or (path.endswith(("/generate", "/revoke")) and "extension-token" in path)
                        else auth.ours
                    )
                    if path == "/api/extension-token/refresh":
                        token = auth.fresh()
                    r = http.request(
                        method.upper(),
                        path,
                        # ASCII JSON: a lone surrogate travels as the escape "\\ud800"
                        content=json.dumps({**base, "description": "sql", field: payload}),
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json",
                        },
                    )
                    _no_5xx(r, f"{method} {path} {field}={payload[:30]!r}")
                    statuses[r.status_code] += 1
                    if path == "/api/extension/usage" and r.status_code == 200:
                        charged += 1
        for payload in SQL:
            if "\u0000" in payload or "\ud800" in payload or len(payload) > 1000:
                continue  # not sendable as a header value
            r = http.post(
                "/api/extension/usage",
                json={"amount": 1, "description": "key"},
                headers={
                    b"Authorization": f"Bearer {auth.ours}".encode(),
                    b"Idempotency-Key": payload.encode(),  # UTF-8 bytes on the wire
                },
            )
            _no_5xx(r, f"Idempotency-Key {payload[:30]!r}")
            charged += r.status_code == 200
    assert world.sql("select count(*) from public.users")[0][0] > 0
    assert world.personal_balance(auth.user) == before - charged
    assert world.consistency_problems() == []
    print(
        f"\nF4 hostile strings: {sum(statuses.values())} requests over "
        f"{sum(len(f) for _, _, f in targets)} string fields: "
        f"{dict(sorted(statuses.items()))}, 0 x 5xx"
    )


# -- forged tokens -----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: Any, signature: bytes = b"") -> str:
    return ".".join(
        [
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(claims).encode()),
            _b64(signature),
        ]
    )


def _forgeries(
    real: str, *, public_pems: list[bytes], attacker_url: str, kid: str | None
) -> dict[str, str]:
    """Tokens with the claims of ``real`` but forged headers or keys."""
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_ec = ec.generate_private_key(ec.SECP256R1())
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    some_kid = kid or header.get("kid") or "k1"
    forged: dict[str, str] = {
        "alg none": _forge({**header, "alg": "none"}, claims),
        "alg None": _forge({**header, "alg": "None"}, claims),
        "alg missing": _forge({"typ": header.get("typ", "JWT")}, claims),
        "alg as a list": _forge({**header, "alg": ["HS256"]}, claims),
        "alg 1e999": _forge({**header, "alg": 1e308}, claims),
        "jku": jwt.encode(
            claims,
            attacker,
            algorithm="RS256",
            headers={"kid": "evil", "jku": f"{attacker_url}/jku"},
        ),
        "x5u": jwt.encode(
            claims,
            attacker,
            algorithm="RS256",
            headers={"kid": "evil", "x5u": f"{attacker_url}/x5u"},
        ),
        "embedded jwk": jwt.encode(
            claims,
            attacker,
            algorithm="RS256",
            headers={"kid": some_kid, "jwk": attacker_jwk},
        ),
        "ES256 attacker key, real kid": jwt.encode(
            claims, attacker_ec, algorithm="ES256", headers={"kid": some_kid}
        ),
        "huge kid": jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": "k" * 8000}),
        "kid path traversal": jwt.encode(
            claims, attacker, algorithm="RS256", headers={"kid": "../../../../dev/null"}
        ),
        "kid sql": jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": "' or 1=1 --"}),
        "kid object": _forge({**header, "kid": {"a": [1]}}, claims, b"x"),
        "crit": _forge({**header, "crit": ["exp"]}, claims, b"x"),
        "header is a list": _b64(b"[1]") + "." + real.split(".")[1] + ".",
        "header not json": _b64(b"\xff\xfe") + "." + real.split(".")[1] + ".",
        "claims a list": _forge(header, [1], b"x"),
        "exp as a string": _forge(header, {**claims, "exp": "never"}, b"x"),
        "exp 1e999": _forge(header, {**claims, "exp": 1e308}, b"x"),
        "signature stripped": real.rsplit(".", 1)[0] + ".",
        "signature of another token": real.rsplit(".", 1)[0] + "." + "A" * 86,
        "four segments": real + ".AAAA",
        "not base64": "!!!.???.***",
        "dots": "." * 3000,
    }
    for i, pem in enumerate(public_pems):
        # Algorithm confusion: HS256 keyed with the verifier's public key.
        forged[f"HS256 with public key {i}"] = _forge(
            {**header, "alg": "HS256"},
            claims,
            hmac.new(
                pem,
                (
                    _b64(json.dumps({**header, "alg": "HS256"}).encode())
                    + "."
                    + _b64(json.dumps(claims).encode())
                ).encode(),
                "sha256",
            ).digest(),
        )
    return forged


def _clerk_public_pems(clerk: FakeClerk) -> list[bytes]:
    pems = []
    for jwk in clerk.jwks()["keys"]:
        key = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
        assert isinstance(key, rsa.RSAPublicKey)
        pems.append(
            key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        pems.append(json.dumps(jwk).encode())
    return pems


def test_F4_forged_tokens_are_401_and_fetch_nothing(
    world: World, served: Served, auth: Auth, fake_clerk: FakeClerk
) -> None:
    attacker_url = fake_clerk.base_url + "/attacker"
    ours = _forgeries(auth.ours, public_pems=[], attacker_url=attacker_url, kid=None)
    theirs = _forgeries(
        auth.clerk,
        public_pems=_clerk_public_pems(fake_clerk),
        attacker_url=attacker_url,
        kid=None,
    )
    before = world.personal_balance(auth.user)
    with _http(served) as http:
        for name, token in ours.items():
            h = {"Authorization": f"Bearer {token}"}
            r = http.get("/api/extension/auth/validate", headers=h)
            assert r.status_code == 401 and r.json()["valid"] is False, (name, r.text)
            r = http.post("/api/extension/usage", json={"amount": 1, "description": "x"}, headers=h)
            assert r.status_code == 401, (name, r.status_code, r.text)
            r = http.post("/api/extension-token/refresh", headers=h)
            assert r.status_code == 401, (name, r.status_code, r.text)
        for name, token in theirs.items():
            h = {"Authorization": f"Bearer {token}"}
            for path in ("/api/extension-token/generate", "/api/dashboard-token/generate"):
                r = http.post(path, headers=h)
                assert r.status_code == 401, (name, path, r.status_code, r.text)
            r = http.get("/api/extension-token", headers=h)
            assert r.status_code == 401, (name, r.status_code, r.text)
    assert fake_clerk.calls("/attacker/jku") == fake_clerk.calls("/attacker/x5u") == 0
    assert world.personal_balance(auth.user) == before
    print(
        f"\nF4 forged tokens: {len(ours)} forgeries of our token x 3 routes, "
        f"{len(theirs)} of a Clerk session x 3 routes: all 401, nothing fetched"
    )


def test_F4_es256_issuer_refuses_algorithm_confusion(db_url: str, fake_clerk: FakeClerk) -> None:
    """With ES256 keys configured: HS256 signed with our public key is refused."""
    jwk = generate_es256_jwk("es-1")
    w = make_world(db_url, fake_clerk, JWT_SIGNING_KEYS=json.dumps([jwk]))
    try:
        user = w.user(personal=10)
        real = w.extension_token(user)
        assert jwt.get_unverified_header(real)["alg"] == "ES256"
        published = w.client.get("/.well-known/jwks.json").json()["keys"]
        assert published and all("d" not in k for k in published)
        pems = []
        for k in published:
            key = ECAlgorithm.from_jwk(json.dumps(k))
            assert isinstance(key, ec.EllipticCurvePublicKey)
            pems.append(
                key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            pems.append(json.dumps(k).encode())
        forged = _forgeries(real, public_pems=pems, attacker_url="http://127.0.0.1:9/x", kid="es-1")
        for name, token in forged.items():
            h = {"Authorization": f"Bearer {token}"}
            r = w.client.get("/api/extension/auth/validate", headers=h)
            assert r.status_code == 401, (name, r.status_code, r.text)
            r = w.client.post(
                "/api/extension/usage", json={"amount": 1, "description": "x"}, headers=h
            )
            assert r.status_code == 401, (name, r.status_code, r.text)
        assert w.personal_balance(user) == Decimal(10)
        ok = w.client.get(
            "/api/extension/auth/validate", headers={"Authorization": f"Bearer {real}"}
        )
        assert ok.status_code == 200
    finally:
        w.close()
        w.issuer.close()
