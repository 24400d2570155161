"""The shared table of hostile tokens: ``schema/hostile_tokens.json`` (issue 19, item 3).

    python -m issuer_dev.hostile_tokens          # rewrite the table
    python -m issuer_dev.hostile_tokens --check  # exit 1 when it is stale

Both verifiers run every row: ``py/tests/test_hostile_tokens.py``
(:meth:`issuer.signing.KeyRing.verify`) and
``supabase/functions/_shared/hostile_tokens_test.ts`` (``jwt.ts``), each with
the table's secret, key, issuer, audience and clock, and each must answer the
row's ``reason`` (``"ok"``: the token is accepted). The tokens are built byte
by byte here, so a row can hold what no JWT library would write: duplicate
JSON member names, non-canonical base64url, padding, a ``b64`` header, JSON
in UTF-16, a lone surrogate... Everything is deterministic (HS256 only is
signed; ES256 rows are refused before their signature is looked at), so the
committed table is exactly what this module writes (a test checks).

The ES256 key below is a TEST key, published here on purpose: it verifies
nothing anywhere else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

from issuer_dev import migrations

TABLE = Path("schema/hostile_tokens.json")

NOW = 1_800_000_000
SECRET = "hostile-token-table-secret-0123456789abcdef"
ISSUER = "softcodes.ai"
AUDIENCE = "vscode-extension"
#: A test-only ES256 key (its private half is public on purpose).
ES256_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "a-SyYv49Ux2k8Ar4ac0-zmSnCvNiCsEGj3RZjsjzmIA",
    "y": "zwhILTaG-s0jCTpIDK9GHe024qRK9ZHd9ZfUk2yIXv0",
    "d": "DKrnyjFHpANTUEywIH98ilR40UisbiOXwGcyf02qvbA",
    "kid": "hostile-es256",
    "alg": "ES256",
    "use": "sig",
}

_ORG = {
    "clerk_org_id": "org_acme",
    "organization_id": "0b9b6a3e-3f43-4c4b-9a38-6f2d1c1e0a01",
    "organization_name": "Acme",
    "stripe_customer_id": "cus_acme",
    "organization_subscription_id": None,
    "seat_id": "5f0c7f52-8d0e-4b0b-a8f1-0d8f8e6b2c02",
    "seat_role": "member",
    "org_role": "org:member",
}
_NO_ORG = dict.fromkeys(_ORG)


def claims(**changes: Any) -> dict[str, Any]:
    """A valid personal access token's claims, changed (``None`` values kept)."""
    base: dict[str, Any] = {
        "sub": "user_alice",
        "email": "alice@example.com",
        "type": "access",
        "iat": NOW - 10,
        "exp": NOW + 600,
        "jti": "7c4b8f1e-2a57-4f8e-9d0b-3e6f5a4c2b10",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "client_id": "dashboard",
        "pool": "personal",
        **_NO_ORG,
    }
    base.update(changes)
    return base


def org_claims(**changes: Any) -> dict[str, Any]:
    return claims(**{"pool": "organization", **_ORG, **changes})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def js(value: Any) -> bytes:
    """Compact JSON, as the issuer writes it."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


HS = {"alg": "HS256", "typ": "at+jwt"}


def hs256(header: bytes | dict[str, Any], payload: bytes | dict[str, Any]) -> str:
    """Header and payload (bytes as given, or compact JSON), signed with SECRET."""
    h = b64(header if isinstance(header, bytes) else js(header))
    p = b64(payload if isinstance(payload, bytes) else js(payload))
    return signed(h, p)


def signed(h: str, p: str) -> str:
    sig = hmac.new(SECRET.encode(), f"{h}.{p}".encode("ascii"), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}"


def noncanonical(segment: str) -> str:
    """The same bytes, spelt with non-zero unused bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 4, 3: 2}[len(segment) % 4]
    last = alphabet.index(segment[-1])
    assert last % (1 << unused) == 0, "segment must end canonically"
    return segment[:-1] + alphabet[last + 1]


def rows() -> list[dict[str, Any]]:
    good = hs256(HS, claims())
    h, p, s = good.split(".")
    org_good = hs256(HS, org_claims())
    payload_text = js(claims())
    es_sig = b64(b"\x01" * 64)
    out: list[dict[str, Any]] = []

    def row(name: str, token: str, reason: str, why: str, **extra: Any) -> None:
        out.append({"name": name, "token": token, "reason": reason, "why": why, **extra})

    row("valid_personal", good, "ok", "a well-formed personal access token (sanity)")
    row("valid_org", org_good, "ok", "a well-formed organization access token (sanity)")
    ext = hs256({"alg": "HS256", "typ": "JWT"}, claims(type="extension_long_lived"))
    row("valid_long_lived", ext, "ok", "a long-lived token with typ JWT (sanity)")
    # -- the compact serialization (T1, RFC 7515 §7.1)
    row("too_long", good + "A" * (8193 - len(good)), "malformed", "longer than 8,192 characters")
    row("padded_signature", good + "=", "malformed", "base64url padding on the signature")
    row("padded_payload", f"{h}.{p}=.{s}", "malformed", "padding inside the token")
    row("two_segments", f"{h}.{p}", "malformed", "not three segments")
    row("four_segments", f"{good}.{s}", "malformed", "a fourth segment")
    row("empty_header", f".{p}.{s}", "malformed", "an empty header segment")
    row("leading_space", " " + good, "malformed", "whitespace before the token")
    row("trailing_newline", good + "\n", "malformed", "whitespace after the token")
    row("standard_alphabet", good[:-1] + "+", "malformed", "'+' is base64, not base64url")
    row("lone_surrogate", good + "\ud800", "malformed", "a lone surrogate in the token text")
    row("non_ascii", "é" + good, "malformed", "a character outside ASCII")
    row(
        "noncanonical_signature",
        f"{h}.{p}.{noncanonical(s)}",
        "malformed",
        "the signature's last character has non-zero unused bits (a second spelling)",
    )
    row(
        "noncanonical_payload",
        signed(h, noncanonical(p) if len(p) % 4 else p + "A"),
        "malformed",
        "a non-canonical payload segment, correctly signed as sent",
    )
    row(
        "noncanonical_header",
        # (The compact header's encoding has no spare bits: one space inside gives it some.)
        signed(noncanonical(b64(b'{"alg": "HS256","typ":"at+jwt"}')), p),
        "malformed",
        "a non-canonical header segment, correctly signed as sent",
    )
    # -- the JSON inside (RFC 7515 §5.2, RFC 8259)
    row(
        "duplicate_claim",
        hs256(HS, payload_text[:-1] + b',"sub":"user_mallory"}'),
        "malformed",
        "sub given twice: parsers that keep the first and the last would disagree",
    )
    row(
        "duplicate_claim_escaped",
        hs256(HS, payload_text[:-1] + b',"s\\u0075b":"user_mallory"}'),
        "malformed",
        "sub given twice, once spelt with a \\u escape",
    )
    row(
        "duplicate_header_alg",
        hs256(b'{"alg":"none","alg":"HS256","typ":"at+jwt"}', claims()),
        "malformed",
        "alg given twice in the header",
    )
    row("header_array", hs256(b'["HS256"]', claims()), "malformed", "a header that is no object")
    row("payload_array", hs256(HS, b"[]"), "malformed", "a payload that is no object")
    row(
        "payload_whitespace",
        hs256(HS, b" " + payload_text),
        "malformed",
        "whitespace around the payload JSON",
    )
    row(
        "payload_trailing_data",
        hs256(HS, payload_text + b"{}"),
        "malformed",
        "something after the payload object",
    )
    row(
        "payload_utf16",
        hs256(HS, json.dumps(claims()).encode("utf-16")),
        "malformed",
        "payload JSON in UTF-16 (RFC 8259 §8.1: UTF-8 only)",
    )
    row(
        "payload_bom",
        hs256(HS, b"\xef\xbb\xbf" + payload_text),
        "malformed",
        "a byte order mark before the payload JSON",
    )
    row(
        "payload_invalid_utf8",
        hs256(HS, payload_text.replace(b"user_alice", b"user_\xffalice")),
        "malformed",
        "a byte that is not UTF-8 in a claim",
    )
    row(
        "payload_nan",
        hs256(HS, payload_text.replace(str(NOW - 10).encode(), b"NaN")),
        "malformed",
        "NaN is not JSON (RFC 8259)",
    )
    row(
        "iat_float",
        hs256(HS, payload_text.replace(str(NOW - 10).encode(), f"{NOW - 10}.0".encode())),
        "bad_claims",
        "iat written as a fraction (an integer is required)",
    )
    row(
        "exp_exponent",
        hs256(HS, payload_text.replace(str(NOW + 600).encode(), b"1.8000006e9")),
        "bad_claims",
        "exp written with an exponent",
    )
    row(
        "exp_5000_digits",
        hs256(HS, payload_text.replace(str(NOW + 600).encode(), b"9" * 5000)),
        "malformed",
        "an integer past Python's int-parsing limit (4,300 digits): refused, never a float",
    )
    row(
        "nested_org_role",
        hs256(HS, org_claims(org_role={"role": "org:admin"})),
        "bad_claims",
        "an object where a string claim belongs",
    )
    row(
        "deeply_nested",
        hs256(HS, org_claims(org_role=[[[[[[[[[[["org:admin"]]]]]]]]]]])),
        "bad_claims",
        "nested arrays where a string claim belongs",
    )
    row(
        "proto_key",
        hs256(HS, payload_text[:-1] + b',"__proto__":{"pool":"organization"}}'),
        "bad_claims",
        "an extra __proto__ member (no prototype tricks, no unknown keys)",
    )
    row("iat_string", hs256(HS, claims(iat=str(NOW))), "bad_claims", "iat as a string")
    row("iat_bool", hs256(HS, claims(iat=True)), "bad_claims", "iat as a boolean")
    # -- the header: algorithms and keys (T1, T2, T3)
    row(
        "alg_none",
        f"{b64(js({'alg': 'none', 'typ': 'at+jwt'}))}.{p}.",
        "alg_not_allowed",
        "alg none",
    )
    row(
        "alg_hs512",
        hs256({"alg": "HS512", "typ": "at+jwt"}, claims()),
        "alg_not_allowed",
        "an algorithm outside the allow-list",
    )
    row(
        "alg_list",
        hs256({"alg": ["HS256"], "typ": "at+jwt"}, claims()),
        "alg_not_allowed",
        "alg that is not a string",
    )
    for header in ("b64", "crit", "jku", "jwk", "x5u", "x5c"):
        value: Any = {"b64": False, "crit": ["exp"], "jku": "https://evil.example/jwks"}.get(
            header, "x"
        )
        row(
            f"header_{header}",
            hs256({**HS, header: value}, claims()),
            "unexpected_header",
            f"a {header} header asks for what we never do",
        )
    row(
        "header_b64_true",
        hs256({**HS, "b64": True}, claims()),
        "unexpected_header",
        "b64 (RFC 7797) even when true",
    )
    row(
        "hs256_with_kid",
        hs256({**HS, "kid": "some-key"}, claims()),
        "unknown_kid",
        "an HS256 token naming a kid",
    )
    row(
        "hs256_kid_null",
        hs256({**HS, "kid": None}, claims()),
        "unknown_kid",
        "an HS256 token with kid null",
    )
    row(
        "hs256_kid_of_es256_key",
        hs256({**HS, "kid": ES256_JWK["kid"]}, claims()),
        "kid_alg_mismatch",
        "an HS256 token naming our ES256 key (algorithm confusion, T2/T3)",
    )
    es_payload = b64(js(claims()))
    row(
        "es256_without_kid",
        f"{b64(js({'alg': 'ES256', 'typ': 'at+jwt'}))}.{es_payload}.{es_sig}",
        "missing_kid",
        "an ES256 token naming no key",
    )
    row(
        "es256_unknown_kid",
        f"{b64(js({'alg': 'ES256', 'typ': 'at+jwt', 'kid': 'elsewhere'}))}.{es_payload}.{es_sig}",
        "unknown_kid",
        "an ES256 token naming a key we do not have",
    )
    # -- the signature
    row("empty_signature", f"{h}.{p}.", "bad_signature", "no signature")
    other = hmac.new(b"another-secret-" * 3, f"{h}.{p}".encode(), hashlib.sha256).digest()
    row("other_secret", f"{h}.{p}.{b64(other)}", "bad_signature", "signed with another secret")
    # -- the claims (T4, T6, T10, T5)
    row("wrong_issuer", hs256(HS, claims(iss=ISSUER + ".evil")), "wrong_issuer", "iss differs")
    row("missing_iss", hs256(HS, claims(iss=None)), "missing_iss", "iss null")
    row(
        "aud_list",
        hs256(HS, claims(aud=[AUDIENCE])),
        "wrong_audience",
        "aud as a list holding ours (exact equality, never membership)",
    )
    row("expired", hs256(HS, claims(exp=NOW)), "expired", "dead at exp")
    row(
        "issued_in_future",
        hs256(HS, claims(iat=NOW + 61, exp=NOW + 600)),
        "issued_in_future",
        "iat more than 60 s ahead",
    )
    row("extra_claim", hs256(HS, claims(admin=True)), "bad_claims", "a claim not in the schema")
    personal = claims()
    del personal["org_role"]
    row("missing_org_key", hs256(HS, personal), "bad_claims", "an org key missing (not null)")
    row(
        "personal_with_seat",
        hs256(HS, claims(seat_id=_ORG["seat_id"])),
        "bad_claims",
        "a personal token carrying an org key",
    )
    row(
        "org_without_seat",
        hs256(HS, org_claims(seat_id=None)),
        "bad_claims",
        "an organization token without seat_id",
    )
    row(
        "org_empty_org_id",
        hs256(HS, org_claims(clerk_org_id="")),
        "bad_claims",
        "an organization token with an empty clerk_org_id",
    )
    row("unknown_pool", hs256(HS, claims(pool="team")), "bad_claims", "a pool not in the schema")
    row(
        "exp_not_after_iat",
        hs256(HS, claims(iat=NOW + 30, exp=NOW + 30)),
        "bad_claims",
        "exp equal to iat (the one rule JSON Schema cannot say)",
    )
    row(
        "wrong_typ",
        hs256({"alg": "HS256", "typ": "JWT"}, claims()),
        "wrong_typ",
        "an access token labelled typ JWT (T5)",
    )
    row(
        "wrong_type",
        ext,
        "wrong_type",
        "a long-lived token where only access tokens are expected",
        expected=["access"],
    )
    return out


def table() -> dict[str, Any]:
    return {
        "description": (
            "Hostile tokens and the reason both verifiers must refuse each with "
            "(py/issuer/signing.py and supabase/functions/_shared/jwt.ts). "
            "Generated by python -m issuer_dev.hostile_tokens; do not edit."
        ),
        "now": NOW,
        "hmac_secret": SECRET,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "es256_jwk": ES256_JWK,
        "default_expected": ["access", "extension_long_lived"],
        "rows": rows(),
    }


def render() -> str:
    return json.dumps(table(), indent=2, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m issuer_dev.hostile_tokens")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    path = migrations.repo_root() / TABLE
    text = render()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{TABLE}: out of date, run python -m issuer_dev.hostile_tokens", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
