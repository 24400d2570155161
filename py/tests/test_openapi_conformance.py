"""R1, R3: docs/openapi.json tells a generated client the truth about the live server.

Every operation of the committed document (whatever routes it has: nothing
here names one) is walked by schemathesis against a real ``issuer serve``,
positive and negative, without auth, with a long-lived token of ours and
with a Clerk session; every answer must have a documented status, content
type and body shape (schemathesis' conformance checks). test_fuzz_api.py
(F4) uses the same generator for "no 5xx"; this file is about the document.

The document's own shape is checked as generators and linters read it: token
routes declare a bearer security scheme (not an optional ``Authorization``
header parameter) and document 401, validation errors are documented as the
400 ``invalid_request`` the app answers (not FastAPI's 422), ``servers`` and
``info.license`` are set. (Redocly's recommended rules run in ``make lint``.)
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.migrations import repo_root
from issuer_dev.served import Served, issuer_serve
from support.world import World, issuer_env

pytestmark = pytest.mark.timeout(300)

EXAMPLES = 25
TIMEOUT = 10.0
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((repo_root() / "docs" / "openapi.json").read_text())
    return doc


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method, path, op


@pytest.fixture(scope="module")
def served(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    env = issuer_env(world.db_url, fake_clerk)
    with issuer_serve(env, tmp_path_factory.mktemp("conformance")) as s:
        yield s


# -- the document's shape ------------------------------------------------------------


def test_R3_token_routes_declare_bearer_security_and_401() -> None:
    doc = _document()
    schemes = doc.get("components", {}).get("securitySchemes", {})
    assert schemes, "no securitySchemes: generated clients do not send tokens"
    for name, scheme in schemes.items():
        assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}, name
    protected = 0
    for method, path, op in _operations(doc):
        where = f"{method.upper()} {path}"
        headers = [p["name"].lower() for p in op.get("parameters", []) if p["in"] == "header"]
        assert "authorization" not in headers, f"{where}: Authorization as a parameter"
        for requirement in op.get("security", []):
            assert set(requirement) <= set(schemes), where
        if op.get("security"):
            protected += 1
            assert "401" in op["responses"], f"{where}: token-protected, 401 undocumented"
    assert protected >= 10, protected


def test_R3_validation_errors_are_documented_as_400_invalid_request() -> None:
    doc = _document()
    for method, path, op in _operations(doc):
        where = f"{method.upper()} {path}"
        text = json.dumps(op["responses"])
        assert "HTTPValidationError" not in text, f"{where}: documents FastAPI's 422"
        if op.get("parameters") or op.get("requestBody"):
            assert "400" in op["responses"], f"{where}: can answer 400, undocumented"
    assert "HTTPValidationError" not in doc.get("components", {}).get("schemas", {})


def test_R1_document_names_servers_and_license() -> None:
    doc = _document()
    assert doc.get("servers") and all(s.get("url") for s in doc["servers"])
    assert doc["info"].get("license", {}).get("identifier") == "MIT"
    assert "MIT" in (repo_root() / "LICENSE").read_text()


# -- the document against the live server -----------------------------------------------


class Tokens:
    def __init__(self, world: World) -> None:
        self.world = world
        self.user = world.user(personal=1_000_000)
        self.ours = world.extension_token(self.user)
        self.clerk = world.session(self.user, exp_in=900)

    def fresh(self) -> str:
        return self.world.extension_token(self.user)


def _walk(served: Served, tokens: Tokens, op: Any, seen: Counter[int], failures: list[str]) -> None:
    variants: list[dict[str, str] | None] = [
        None,
        {"Authorization": f"Bearer {tokens.ours}"},
        {"Authorization": f"Bearer {tokens.clerk}"},
    ]
    strategy = st.one_of(
        [
            op.as_strategy(generation_mode=mode, headers=headers)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            for headers in variants
        ]
    )
    label = f"{op.method.upper()} {op.path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        if (case.headers or {}).get("Authorization") == f"Bearer {tokens.ours}":
            # A refresh revokes the token it is given: every example gets its own.
            case.headers["Authorization"] = f"Bearer {tokens.fresh()}"
        try:
            response = case.call(base_url=served.url, timeout=TIMEOUT)
        except (requests.RequestException, UnicodeError, ValueError):
            return  # the HTTP client refused to send it (F4 counts these)
        seen[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                what = " ".join(str(failure.message).split())[:160]
                failures.append(f"{label} -> {response.status_code}: {failure.title}: {what}")

    run()


def test_R1_every_answer_of_every_route_is_documented(
    world: World, served: Served, tokens: Tokens
) -> None:
    doc = _document()
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    by_operation: dict[str, Counter[int]] = defaultdict(Counter)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        op = result.ok()
        _walk(served, tokens, op, by_operation[f"{op.method.upper()} {op.path}"], failures)
    assert served.process.poll() is None
    walked = set(by_operation)
    documented = {f"{m.upper()} {p}" for m, p, _ in _operations(doc)}
    assert walked == documented, documented ^ walked
    assert all(sum(c.values()) > 0 for c in by_operation.values()), by_operation
    unique = sorted(set(failures))
    assert unique == [], f"{len(unique)} undocumented answers:\n" + "\n".join(unique[:15])
    print(
        "\nOpenAPI conformance: "
        + "; ".join(f"{k}: {dict(sorted(v.items()))}" for k, v in sorted(by_operation.items()))
    )


@pytest.fixture(scope="module")
def tokens(world: World) -> Tokens:
    return Tokens(world)
