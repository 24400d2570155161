"""Our keys, and signing and verifying our own tokens (RFC 8725, RFC 9068).

Two algorithms, each with its own key material and never interchangeable:

* **HS256** with ``JWT_SECRET`` (the original system's tokens). HS256 tokens
  carry no ``kid``.
* **ES256** with the private JWKs of ``JWT_SIGNING_KEYS``; every token carries
  the ``kid`` of the key that signed it, and the public halves are published
  as a JWKS so other services can verify without a shared secret.

Which one signs: ``JWT_SIGNING_ALG``, default ES256 when keys are configured.
Both verify. Rotation (T8): add the new key *second* in ``JWT_SIGNING_KEYS``
(published and verifying, not yet signing), wait for caches, then move it
first; keep the old key listed until its last token has expired.

Header ``typ`` (explicit typing, RFC 8725 §3.11): access tokens use
``at+jwt`` as RFC 9068 asks of OAuth access tokens; long-lived extension
tokens use plain ``JWT`` because they are not RFC 9068 access tokens (they are
revocable credentials checked against the database). ``verify`` requires the
``typ`` that matches the token's ``type`` claim, so a token of one kind cannot
be relabelled as the other (T5).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from issuer.claims import TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION, TOKEN_TYPES, TokenClaims
from issuer.claims import validate_claims as _validate_claims
from issuer.errors import InvalidToken
from issuer.settings import read_signing_keys

if TYPE_CHECKING:
    from issuer.settings import Settings

log = logging.getLogger(__name__)

HS256: Final = "HS256"
ES256: Final = "ES256"

TYP_BY_TOKEN_TYPE: Final[Mapping[str, str]] = {
    TOKEN_TYPE_ACCESS: "at+jwt",
    TOKEN_TYPE_EXTENSION: "JWT",
}

IAT_LEEWAY_SECONDS: Final = 60
"""How far in the future ``iat`` may be (clock skew between our instances, T6)."""

MAX_TOKEN_LENGTH: Final = 8192
"""Anything longer is not one of ours; refuse before parsing."""

_FORBIDDEN_HEADERS: Final = frozenset({"crit", "jku", "jwk", "x5u", "x5c"})
"""Headers that ask the verifier to fetch or trust keys, or to understand
extensions: we never do either, so a token carrying them is refused."""

_REQUIRED_CLAIMS: Final = ["iss", "aud", "exp", "iat", "sub", "jti"]


@dataclass(frozen=True, slots=True)
class _EcKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


def _load_ec_keys(jwks: Sequence[Mapping[str, Any]]) -> list[_EcKey]:
    keys = []
    for jwk in jwks:
        key = ECAlgorithm.from_jwk(json.dumps(dict(jwk)))
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"signing key {jwk.get('kid')!r} is not an EC private key")
        keys.append(_EcKey(kid=str(jwk["kid"]), private_key=key))
    return keys


_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, to choose the key; PyJWT then checks the whole token.

    Same checks as ``jwt.get_unverified_header`` (three segments, base64url
    alphabet, a JSON object), but with a regular expression instead of PyJWT's
    per-byte Python loop, which cost a third of every verification.
    """
    parts = token.split(".")
    if len(parts) != 3 or not _B64URL.fullmatch(parts[0]):
        raise InvalidToken("malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed")
    return header


class KeyRing:
    """Signs and verifies our tokens; thread-safe.

    ``key_source`` re-reads our own ES256 key set (``JWT_SIGNING_KEYS``). It is
    consulted only when a token names a ``kid`` we do not know, and at most
    once per ``refresh_interval`` seconds (T3): a stream of tokens with made-up
    ``kid`` values costs nothing. No ``kid`` is ever looked up anywhere else.
    """

    def __init__(
        self,
        *,
        hmac_secret: bytes,
        issuer: str,
        audience: str,
        es256_jwks: Sequence[Mapping[str, Any]] = (),
        signing_alg: Literal["HS256", "ES256"] | None = None,
        key_source: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
        refresh_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(hmac_secret) < 32:
            raise ValueError("HS256 secret must be at least 32 bytes")
        ec_keys = _load_ec_keys(es256_jwks)
        alg = signing_alg or (ES256 if ec_keys else HS256)
        if alg == ES256 and not ec_keys:
            raise ValueError("ES256 signing needs at least one ES256 key")
        self._hmac_secret = hmac_secret
        self.issuer = issuer
        self.audience = audience
        self.signing_alg: Literal["HS256", "ES256"] = alg
        self._signing_key: _EcKey | None = ec_keys[0] if alg == ES256 else None
        self._ec_keys: dict[str, _EcKey] = {key.kid: key for key in ec_keys}
        self._key_source = key_source
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_refresh = clock()
        self.refresh_count = 0
        """How many times ``key_source`` was consulted (visible for tests)."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = 60.0,
    ) -> KeyRing:
        """The key ring the issuer runs with, from validated settings."""
        source = settings.jwt_signing_keys
        jwks: list[dict[str, Any]] = []
        key_source = None
        if source is not None:
            raw = source.get_secret_value()
            jwks = read_signing_keys(raw)

            def key_source() -> list[dict[str, Any]]:
                return read_signing_keys(raw)

        return cls(
            hmac_secret=settings.jwt_secret.get_secret_value().encode(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            es256_jwks=jwks,
            signing_alg=settings.signing_alg,
            key_source=key_source,
            refresh_interval=refresh_interval,
            clock=clock,
        )

    @property
    def signing_kid(self) -> str | None:
        """The ``kid`` new tokens carry (``None`` when HS256 signs)."""
        return self._signing_key.kid if self._signing_key else None

    @property
    def algorithms(self) -> frozenset[str]:
        """The verification allow-list: HS256, plus ES256 when we hold ES256 keys."""
        with self._lock:
            return frozenset({HS256, ES256} if self._ec_keys else {HS256})

    # -- signing ---------------------------------------------------------------

    def sign(self, claims: TokenClaims) -> str:
        """Sign ``claims`` after validating them against the schema (T10)."""
        payload = claims.to_dict()
        _validate_claims(payload)
        if claims.iss != self.issuer or claims.aud != self.audience:
            raise ValueError("claims name another issuer or audience than this key ring")
        headers: dict[str, Any] = {"typ": TYP_BY_TOKEN_TYPE[claims.type]}
        if self._signing_key is not None:
            headers["kid"] = self._signing_key.kid
            return jwt.encode(payload, self._signing_key.private_key, ES256, headers=headers)
        return jwt.encode(payload, self._hmac_secret, HS256, headers=headers)

    # -- verification ------------------------------------------------------------

    def verify(self, token: str, *, expected_type: str | Collection[str]) -> TokenClaims:
        """Verify one of our tokens and return its claims, or raise ``InvalidToken``.

        Checks, in order: size and header (explicit allow-list, no ``alg:
        none``, no key-fetching headers), key selection by ``alg`` and ``kid``
        (T1-T3), signature, ``iss`` exactly and ``aud`` exactly (T4), ``exp``
        (a token is dead *at* ``exp``) and ``iat`` at most 60 s ahead (T6), the
        claim schema (T10), ``type`` in ``expected_type`` and the header
        ``typ`` matching it (T5).
        """
        expected = {expected_type} if isinstance(expected_type, str) else set(expected_type)
        if not expected or not expected <= TOKEN_TYPES:
            raise ValueError(f"expected_type must be among {sorted(TOKEN_TYPES)}")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed")

        header = _unverified_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken("alg_not_allowed")
        if _FORBIDDEN_HEADERS & header.keys():
            raise InvalidToken("unexpected_header")
        key = self._verification_key(alg, header.get("kid"))

        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "strict_aud": True,
                    # Time is checked below against our own (injectable) clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad_signature") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong_issuer") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong_audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"missing_{exc.claim}") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed") from None

        # Belt and braces: exact string equality, never prefix or membership.
        if payload.get("iss") != self.issuer:
            raise InvalidToken("wrong_issuer")
        if payload.get("aud") != self.audience:
            raise InvalidToken("wrong_audience")
        self._check_times(payload)

        try:
            claims = _validate_claims(payload)
        except ValueError:
            raise InvalidToken("bad_claims") from None
        if claims.type not in expected:
            raise InvalidToken("wrong_type")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() != TYP_BY_TOKEN_TYPE[claims.type].lower():
            raise InvalidToken("wrong_typ")
        return claims

    def _check_times(self, payload: Mapping[str, Any]) -> None:
        exp, iat = payload.get("exp"), payload.get("iat")
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise InvalidToken("bad_claims")
        if isinstance(iat, bool) or not isinstance(iat, int):
            raise InvalidToken("bad_claims")
        now = self._clock()
        if now >= exp:
            raise InvalidToken("expired")
        if iat > now + IAT_LEEWAY_SECONDS:
            raise InvalidToken("issued_in_future")

    def _verification_key(self, alg: str, kid: object) -> bytes | ec.EllipticCurvePublicKey:
        if alg == HS256:
            if kid is None:
                return self._hmac_secret
            with self._lock:
                known = isinstance(kid, str) and kid in self._ec_keys
            # HS256 tokens never carry a kid; one naming an ES256 key is an
            # algorithm-confusion attempt (T2/T3).
            raise InvalidToken("kid_alg_mismatch" if known else "unknown_kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("missing_kid")
        key = self._find_ec_key(kid)
        if key is None:
            raise InvalidToken("unknown_kid")
        return key.public_key

    def _find_ec_key(self, kid: str) -> _EcKey | None:
        with self._lock:
            key = self._ec_keys.get(kid)
            if key is not None or self._key_source is None:
                return key
            now = self._clock()
            if now - self._last_refresh < self._refresh_interval:
                return None
            self._last_refresh = now
            self.refresh_count += 1
            try:
                fresh = _load_ec_keys(self._key_source())
            except (OSError, ValueError) as exc:
                log.warning("re-reading JWT_SIGNING_KEYS failed, keeping current keys: %s", exc)
                return None
            keys = {key.kid: key for key in fresh}
            if self._signing_key is not None:
                # We keep signing with this key until restart: it must keep verifying.
                keys.setdefault(self._signing_key.kid, self._signing_key)
            self._ec_keys = keys
            return keys.get(kid)

    # -- publication -------------------------------------------------------------

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS to publish: public ES256 keys only (T8).

        Built field by field from the public key, so neither a private ``d``
        nor HMAC material can ever appear, whatever the source JWKs contained.
        """
        with self._lock:
            keys = list(self._ec_keys.values())
        published = []
        for key in keys:
            public = ECAlgorithm.to_jwk(key.public_key, as_dict=True)
            published.append(
                {
                    "kty": "EC",
                    "crv": str(public["crv"]),
                    "x": str(public["x"]),
                    "y": str(public["y"]),
                    "kid": key.kid,
                    "alg": ES256,
                    "use": "sig",
                }
            )
        return {"keys": published}


def generate_es256_jwk(kid: str) -> dict[str, str]:
    """A new private ES256 JWK with ``kid``, for ``JWT_SIGNING_KEYS``."""
    if not kid:
        raise ValueError("kid must be non-empty")
    private_key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private_key, as_dict=True)
    return {
        "kty": "EC",
        "crv": str(jwk["crv"]),
        "x": str(jwk["x"]),
        "y": str(jwk["y"]),
        "d": str(jwk["d"]),
        "kid": kid,
        "alg": ES256,
        "use": "sig",
    }


def generate_hs256_secret() -> str:
    """A new ``JWT_SECRET``: 48 random bytes, URL-safe base64 (64 characters)."""
    return secrets.token_urlsafe(48)
