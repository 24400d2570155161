"""The shared table of hostile tokens, run by the Python verifier (issue 19, item 3).

``schema/hostile_tokens.json`` (written by ``python -m issuer_dev.hostile_tokens``)
holds tokens no library would write (duplicate JSON names, non-canonical
base64url, padding, ``b64`` headers, UTF-16 JSON, lone surrogates, algorithm
confusion ...) and the reason each must be refused with. The TypeScript
verifier runs the same rows (``supabase/functions/_shared/hostile_tokens_test.ts``,
under ``test_edge_functions.py``), so both refuse the same tokens for the same
reasons (T1-T6, T10).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from issuer.errors import InvalidToken
from issuer.signing import KeyRing
from issuer_dev import hostile_tokens, migrations

TABLE: dict[str, Any] = json.loads(
    (migrations.repo_root() / hostile_tokens.TABLE).read_text(encoding="utf-8")
)


def test_the_committed_table_is_what_the_generator_writes() -> None:
    committed = (migrations.repo_root() / hostile_tokens.TABLE).read_text(encoding="utf-8")
    assert committed == hostile_tokens.render(), (
        "schema/hostile_tokens.json is stale: run python -m issuer_dev.hostile_tokens"
    )


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing(
        hmac_secret=TABLE["hmac_secret"].encode(),
        issuer=TABLE["issuer"],
        audience=TABLE["audience"],
        es256_jwks=[TABLE["es256_jwk"]],
        signing_alg="HS256",
        clock=lambda: float(TABLE["now"]),
    )


@pytest.mark.parametrize("row", TABLE["rows"], ids=[r["name"] for r in TABLE["rows"]])
def test_T1_T10_hostile_token_refused_as_the_table_says(ring: KeyRing, row: dict[str, Any]) -> None:
    expected = row.get("expected", TABLE["default_expected"])
    if row["reason"] == "ok":
        assert ring.verify(row["token"], expected_type=expected).sub
        return
    with pytest.raises(InvalidToken) as err:
        ring.verify(row["token"], expected_type=expected)
    assert err.value.reason == row["reason"], row["why"]


def test_the_table_covers_the_families_the_issue_names() -> None:
    names = {r["name"] for r in TABLE["rows"]}
    for needed in (
        "header_b64",
        "duplicate_claim",
        "noncanonical_signature",
        "padded_signature",
        "alg_none",
        "hs256_with_kid",
        "es256_unknown_kid",
        "deeply_nested",
        "too_long",
        "lone_surrogate",
    ):
        assert needed in names
