"""Configuration: one validated object built from environment variables.

Start-up calls :func:`load_settings`; a missing or invalid variable stops it
with a one-line :class:`~issuer.errors.ConfigError` that names the variable and
never echoes its value (secrets live in these variables). Secrets are held as
``SecretStr`` so a ``repr`` or log line of the settings never shows them.

Neither database backend is required here: the CLI has commands that need no
database, and ``rpc.py`` decides which backend to use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from jwt.algorithms import ECAlgorithm
from jwt.exceptions import InvalidKeyError
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from issuer.errors import ConfigError

MIN_HMAC_SECRET_BYTES = 32
"""RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (T9)."""

DAY = 86_400

_env_override: ContextVar[Mapping[str, str] | None] = ContextVar("_env_override", default=None)


class _EnvMappingSource(PydanticBaseSettingsSource):
    """Read ``FIELD_NAME`` (upper case, exact) from a mapping, as plain strings.

    Used instead of pydantic-settings' own env source for two reasons: the
    mapping can be injected (tests, ``load_settings(env)``) without falling
    back to ``os.environ``, and values are never JSON-decoded (a comma list in
    ``CLERK_AUTHORIZED_PARTIES`` is a list, not broken JSON). Empty values
    count as unset.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value = self._env().get(field_name.upper())
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = self._env()
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            raw = env.get(name.upper())
            if raw is not None and raw.strip() != "":
                values[name] = raw
        return values

    @staticmethod
    def _env() -> Mapping[str, str]:
        override = _env_override.get()
        return os.environ if override is None else override


class Settings(BaseSettings):
    """Every configuration variable of the issuer (ARCHITECTURE.md, Configuration)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str | None = Field(default=None, repr=False)
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None

    jwt_secret: SecretStr
    jwt_signing_keys: SecretStr | None = None
    """File path or inline JSON with ES256 private JWKs; secret because inline JSON is."""
    jwt_signing_alg: Literal["HS256", "ES256"] | None = None
    """Which algorithm signs; default ES256 when JWT_SIGNING_KEYS is set, else HS256."""
    jwt_issuer: str = "softcodes.ai"
    """The tokens' ``iss`` claim (a name, not a URL: the seed's consumers check it)."""
    issuer_url: str | None = None
    """The issuer's public base URL: the RFC 8414 / RFC 9207 issuer identifier
    and the base of every endpoint in the metadata and of every absolute URL
    (L11: never the Host header). Unset: ``issuer serve`` uses
    ``http://<host>:<port>`` on a loopback address and refuses any other."""
    jwt_audience: str = "vscode-extension"
    access_token_ttl: int = Field(default=3600, gt=0)
    extension_token_ttl: int = Field(default=90 * DAY, gt=0)
    refresh_token_ttl: int = Field(default=30 * DAY, gt=0)
    extension_token_max_lifetime: int = Field(default=365 * DAY, gt=0)
    """Absolute lifetime (seconds) of a rotation chain, from the original
    sign-in: long-lived token rotations and refresh-token families (L3).
    Rotating never extends it."""
    jwt_accept_hs256: bool | None = None
    """Whether HS256 tokens verify. Unset: only while HS256 signs, so ES256
    signing keys refuse HS256 (L12); ``true`` accepts both (the migration
    window); ``false`` refuses every HS256 token (L6) and needs ES256 signing.
    See :attr:`accepts_hs256` and docs/operations.md."""

    clerk_secret_key: SecretStr | None = None
    clerk_api_url: str = "https://api.clerk.com/v1"
    clerk_jwks_url: str | None = None
    clerk_authorized_parties: tuple[str, ...] = ()
    clerk_sign_in_url: str | None = None
    clerk_timeout: float = Field(default=5.0, gt=0, le=60)

    database_role: str = "service_role"
    """Role the issuer's connections take (``-c role=`` at connect): the RPCs are
    granted to service_role. Empty: keep the login role."""
    database_pooler: Literal["auto", "none", "session", "transaction"] = "auto"
    """What is between the issuer and Postgres (issue 16 P1, issuer.rpc.resolve_pooler):
    ``auto`` is ``transaction`` on port 6543 (Supavisor's transaction mode), else ``none``."""
    database_pool_size: int = Field(default=10, ge=1, le=200)
    usage_coalescing: bool = True
    """``USAGE_COALESCING=on|off``: POST /api/extension/usage gathers concurrent
    org-pool deductions of one pool into one ``deduct_credits_pooled_batch``
    call (issue 17, issuer.coalescing). Off: one ``deduct_credits_pooled`` call
    per request. Only with a direct database connection (DATABASE_URL)."""
    oauth_clients: str | None = None
    """JSON ``{"client_id": ["redirect uri", ...]}``; see issuer.flows.clients."""
    refresh_grace_seconds: int = Field(default=0, ge=0, le=60)
    """How long a just-rotated refresh token is answered with a plain refusal
    instead of revoking its family (lost responses); see docs/token-stores.md."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvMappingSource(settings_cls))

    @field_validator("jwt_secret")
    @classmethod
    def _hmac_secret_long_enough(cls, value: SecretStr) -> SecretStr:
        length = len(value.get_secret_value().encode())
        if length < MIN_HMAC_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_HMAC_SECRET_BYTES} bytes (got {length}); "
                "generate one with `issuer keys generate`"
            )
        return value

    @field_validator("jwt_signing_keys")
    @classmethod
    def _signing_keys_readable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            read_signing_keys(value.get_secret_value())
        return value

    @field_validator("jwt_issuer", "jwt_audience")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if value.strip() != value or not value:
            raise ValueError("must be a non-empty string without surrounding spaces")
        return value

    @field_validator("supabase_url", "clerk_api_url", "clerk_jwks_url", "clerk_sign_in_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("issuer_url")
    @classmethod
    def _issuer_identifier(cls, value: str | None) -> str | None:
        """RFC 8414 §2: an https URL (http for loopback), no query or fragment.

        No path either: RFC 8414 §3 would then put the metadata under
        ``/.well-known/oauth-authorization-server/<path>``, which this server
        does not serve.
        """
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("must not have a query or fragment")
        if parts.path not in ("", "/"):
            raise ValueError("must not have a path (the issuer is served at the host's root)")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not contain credentials")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("clerk_authorized_parties", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.supabase_url and self.supabase_service_role_key is None:
            raise ValueError("SUPABASE_SERVICE_ROLE_KEY: required when SUPABASE_URL is set")
        if self.supabase_service_role_key is not None and not self.supabase_url:
            raise ValueError("SUPABASE_URL: required when SUPABASE_SERVICE_ROLE_KEY is set")
        if self.jwt_signing_alg == "ES256" and self.jwt_signing_keys is None:
            raise ValueError("JWT_SIGNING_ALG: ES256 needs JWT_SIGNING_KEYS")
        if self.jwt_accept_hs256 is False and self.signing_alg != "ES256":
            raise ValueError(
                "JWT_ACCEPT_HS256: false needs ES256 signing (JWT_SIGNING_KEYS, JWT_SIGNING_ALG=ES256)"
            )
        return self

    @property
    def accepts_hs256(self) -> bool:
        """HS256 verifies: as ``JWT_ACCEPT_HS256`` says, else only when HS256 signs (L12)."""
        if self.jwt_accept_hs256 is not None:
            return self.jwt_accept_hs256
        return self.signing_alg == "HS256"

    @property
    def signing_alg(self) -> Literal["HS256", "ES256"]:
        """The algorithm that signs new tokens."""
        if self.jwt_signing_alg is not None:
            return self.jwt_signing_alg
        return "ES256" if self.jwt_signing_keys is not None else "HS256"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Validate the configuration in ``env`` (default: ``os.environ``).

    Only the given mapping is read when one is passed, so tests are not
    influenced by the caller's environment. Raises :class:`ConfigError` with
    one line such as ``JWT_SECRET: must be at least 32 bytes (got 9)``.
    """
    with _reading(env):
        try:
            return Settings()
        except ValidationError as exc:
            raise _config_error(exc) from None


@contextmanager
def _reading(env: Mapping[str, str] | None) -> Iterator[None]:
    token = _env_override.set(env)
    try:
        yield
    finally:
        _env_override.reset(token)


def _config_error(exc: ValidationError) -> ConfigError:
    """One line naming each bad variable; input values are never included."""
    parts: list[str] = []
    first_variable: str | None = None
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        loc = error["loc"]
        if loc:
            variable = str(loc[0]).upper()
            parts.append(f"{variable}: {message}")
        else:
            variable = message.split(":", 1)[0]
            parts.append(message)
        first_variable = first_variable or variable
    return ConfigError("; ".join(parts) or "invalid configuration", variable=first_variable)


def read_signing_keys(source: str) -> list[dict[str, Any]]:
    """Parse ``JWT_SIGNING_KEYS``: a file path or inline JSON, JWKS or a list.

    Returns the private ES256 JWKs in order (the first signs). Raises
    ``ValueError`` with a message that never contains key material. Called at
    start-up (validation) and by the key ring when it re-reads its own keys.
    """
    text = source.strip()
    if not text.startswith(("{", "[")):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            raise ValueError("is neither inline JSON nor a readable file") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("is not valid JSON") from None
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        keys = document["keys"]
    elif isinstance(document, list):
        keys = document
    else:
        raise ValueError('must be a JWKS {"keys": [...]} or a list of JWKs')
    if not keys:
        raise ValueError("contains no keys")

    seen: set[str] = set()
    for index, jwk in enumerate(keys):
        _check_es256_private_jwk(jwk, index)
        if jwk["kid"] in seen:
            raise ValueError(f"key #{index} repeats kid {jwk['kid']!r}")
        seen.add(jwk["kid"])
    return [dict(jwk) for jwk in keys]


def _check_es256_private_jwk(jwk: object, index: int) -> None:
    where = f"key #{index}"
    if not isinstance(jwk, dict):
        raise ValueError(f"{where} is not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError(f"{where} has no kid")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError(f"{where} ({kid}) is not an EC P-256 key")
    if jwk.get("alg", "ES256") != "ES256":
        raise ValueError(f"{where} ({kid}) has alg other than ES256")
    if "d" not in jwk:
        raise ValueError(f"{where} ({kid}) is a public key; a private JWK is needed")
    try:
        ECAlgorithm.from_jwk(json.dumps(jwk))
    except (InvalidKeyError, ValueError, TypeError):
        raise ValueError(f"{where} ({kid}) is not a valid EC private key") from None
