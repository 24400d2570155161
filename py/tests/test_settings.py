"""Configuration is validated at start-up and names the bad variable (T9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from issuer.errors import ConfigError
from issuer.settings import Settings, load_settings
from issuer.signing import generate_es256_jwk, generate_hs256_secret

SECRET = "s" * 32


def env(**values: str) -> dict[str, str]:
    return {"JWT_SECRET": SECRET, **values}


def test_defaults_follow_the_contract() -> None:
    settings = load_settings(env())
    assert settings.jwt_issuer == "softcodes.ai"
    assert settings.jwt_audience == "vscode-extension"
    assert settings.access_token_ttl == 3600
    assert settings.extension_token_ttl == 90 * 86400
    assert settings.refresh_token_ttl == 30 * 86400
    assert settings.clerk_api_url == "https://api.clerk.com/v1"
    assert settings.clerk_timeout == 5.0
    assert settings.clerk_authorized_parties == ()
    assert settings.database_url is None and settings.supabase_url is None
    assert settings.signing_alg == "HS256"


def test_T9_short_hmac_secret_stops_start_up_naming_JWT_SECRET() -> None:
    short = "tooshort-31-bytes-xxxxxxxxxxxxx"
    assert len(short.encode()) == 31
    with pytest.raises(ConfigError) as caught:
        load_settings({"JWT_SECRET": short})
    message = str(caught.value)
    assert message.startswith("JWT_SECRET: must be at least 32 bytes (got 31)")
    assert "\n" not in message
    assert short not in message
    assert caught.value.variable == "JWT_SECRET"


def test_T9_secret_length_counts_bytes_not_characters() -> None:
    load_settings({"JWT_SECRET": "é" * 16})  # 32 bytes in UTF-8
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings({"JWT_SECRET": "é" * 15})


def test_missing_secret_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^JWT_SECRET: is required$"):
        load_settings({})
    with pytest.raises(ConfigError, match=r"^JWT_SECRET: is required$"):
        load_settings({"JWT_SECRET": "   "})


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("JWT_ISSUER", "from-process-env")
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings({})
    assert load_settings().jwt_issuer == "from-process-env"


def test_secrets_never_appear_in_repr() -> None:
    settings = load_settings(
        env(
            CLERK_SECRET_KEY="sk_live_hidden",
            DATABASE_URL="postgresql://u:pw-hidden@h/db",
            JWT_SIGNING_KEYS=json.dumps([generate_es256_jwk("k1")]),
        )
    )
    text = repr(settings)
    for secret in (SECRET, "sk_live_hidden", "pw-hidden", '"d"'):
        assert secret not in text


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ACCESS_TOKEN_TTL", "0"),
        ("EXTENSION_TOKEN_TTL", "-5"),
        ("REFRESH_TOKEN_TTL", "thirty days"),
        ("CLERK_TIMEOUT", "0"),
        ("CLERK_TIMEOUT", "600"),
        ("CLERK_API_URL", "api.clerk.com/v1"),
        ("CLERK_JWKS_URL", "file:///etc/passwd"),
        ("CLERK_SIGN_IN_URL", "not a url"),
        ("SUPABASE_URL", "ftp://x"),
        ("DATABASE_URL", "mysql://x/y"),
        ("JWT_SIGNING_ALG", "RS256"),
        ("JWT_ISSUER", " softcodes.ai"),
    ],
)
def test_bad_values_are_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env(**{variable: value}))
    assert str(caught.value).startswith(f"{variable}: ")
    assert caught.value.variable == variable


def test_supabase_url_and_key_come_together() -> None:
    with pytest.raises(ConfigError, match=r"^SUPABASE_SERVICE_ROLE_KEY: required"):
        load_settings(env(SUPABASE_URL="http://127.0.0.1:54321"))
    with pytest.raises(ConfigError, match=r"^SUPABASE_URL: required"):
        load_settings(env(SUPABASE_SERVICE_ROLE_KEY="key"))
    settings = load_settings(
        env(SUPABASE_URL="http://127.0.0.1:54321/", SUPABASE_SERVICE_ROLE_KEY="key")
    )
    assert settings.supabase_url == "http://127.0.0.1:54321"


def test_authorized_parties_is_a_comma_list() -> None:
    settings = load_settings(
        env(CLERK_AUTHORIZED_PARTIES=" https://app.example.com, http://localhost:3000 ,")
    )
    assert settings.clerk_authorized_parties == (
        "https://app.example.com",
        "http://localhost:3000",
    )


def test_signing_keys_inline_jwks_list_or_file(tmp_path: Path) -> None:
    k1, k2 = generate_es256_jwk("k1"), generate_es256_jwk("k2")
    as_jwks = json.dumps({"keys": [k1, k2]})
    as_list = json.dumps([k1, k2])
    path = tmp_path / "keys.json"
    path.write_text(as_jwks)
    for source in (as_jwks, as_list, str(path)):
        settings = load_settings(env(JWT_SIGNING_KEYS=source))
        assert settings.signing_alg == "ES256"
    forced = load_settings(env(JWT_SIGNING_KEYS=as_list, JWT_SIGNING_ALG="HS256"))
    assert forced.signing_alg == "HS256"


def test_L12_with_es256_keys_hs256_is_refused_unless_the_deployer_enables_it() -> None:
    """The default follows the keys: ES256 signing keys refuse HS256; ``true`` re-enables it."""
    from issuer.signing import KeyRing

    keys = json.dumps([generate_es256_jwk("k1")])
    by_default = KeyRing.from_settings(load_settings(env(JWT_SIGNING_KEYS=keys)))
    assert by_default.algorithms == {"ES256"}
    assert load_settings(env(JWT_SIGNING_KEYS=keys)).accepts_hs256 is False
    enabled = load_settings(env(JWT_SIGNING_KEYS=keys, JWT_ACCEPT_HS256="true"))
    assert KeyRing.from_settings(enabled).algorithms == {"HS256", "ES256"}
    # No ES256 keys, or keys but HS256 chosen to sign: HS256 is what signs, so it verifies.
    assert KeyRing.from_settings(load_settings(env())).algorithms == {"HS256"}
    hs_signing = load_settings(env(JWT_SIGNING_KEYS=keys, JWT_SIGNING_ALG="HS256"))
    assert KeyRing.from_settings(hs_signing).algorithms == {"HS256", "ES256"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/keys.json", "neither inline JSON nor a readable file"),
        ('{"keys": [', "not valid JSON"),
        ('{"kty": "EC"}', "JWKS"),
        ("[]", "no keys"),
        ('[{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]', "not an EC P-256 key"),
    ],
)
def test_bad_signing_keys_are_named_without_echoing(source: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env(JWT_SIGNING_KEYS=source))
    assert str(caught.value).startswith("JWT_SIGNING_KEYS: ")
    assert message in str(caught.value)
    assert "c2VjcmV0" not in str(caught.value)


def test_signing_keys_must_be_private_with_unique_kids() -> None:
    key = generate_es256_jwk("k1")
    public = {k: v for k, v in key.items() if k != "d"}
    with pytest.raises(ConfigError, match="public key"):
        load_settings(env(JWT_SIGNING_KEYS=json.dumps([public])))
    with pytest.raises(ConfigError, match="repeats kid"):
        load_settings(env(JWT_SIGNING_KEYS=json.dumps([key, generate_es256_jwk("k1")])))
    no_kid = {k: v for k, v in key.items() if k != "kid"}
    with pytest.raises(ConfigError, match="no kid"):
        load_settings(env(JWT_SIGNING_KEYS=json.dumps([no_kid])))
    broken = {**key, "d": key["x"]}
    with pytest.raises(ConfigError, match="not a valid EC private key"):
        load_settings(env(JWT_SIGNING_KEYS=json.dumps([broken])))
    assert key["d"] not in repr(load_settings(env(JWT_SIGNING_KEYS=json.dumps([key]))))


def test_es256_signing_needs_keys() -> None:
    with pytest.raises(ConfigError, match=r"^JWT_SIGNING_ALG: ES256 needs JWT_SIGNING_KEYS"):
        load_settings(env(JWT_SIGNING_ALG="ES256"))


def test_generated_secret_is_accepted() -> None:
    secret = generate_hs256_secret()
    assert len(secret.encode()) >= 32
    assert load_settings({"JWT_SECRET": secret}).jwt_secret.get_secret_value() == secret


def test_settings_object_is_immutable() -> None:
    settings = load_settings(env())
    assert isinstance(settings, Settings)
    with pytest.raises(ValueError, match="frozen"):
        settings.jwt_issuer = "other"  # type: ignore[misc]


def test_R1_issuer_url_is_an_rfc8414_issuer_identifier() -> None:
    assert load_settings(env()).issuer_url is None
    got = load_settings(env(ISSUER_URL="https://issuer.example.com/"))
    assert got.issuer_url == "https://issuer.example.com"
    assert got.jwt_issuer == "softcodes.ai"  # the tokens' iss is another setting
    for bad in (
        "issuer.example.com",
        "ftp://issuer.example.com",
        "https://issuer.example.com/?a=1",
        "https://issuer.example.com/#x",
        "https://issuer.example.com/sub",
        "https://user:pw@issuer.example.com",
    ):
        with pytest.raises(ConfigError, match=r"^ISSUER_URL: ") as caught:
            load_settings(env(ISSUER_URL=bad))
        assert bad not in str(caught.value)
