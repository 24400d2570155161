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

Encoding and verification are written out here (:meth:`KeyRing.sign`,
:meth:`KeyRing.verify`) rather than left to ``jwt.encode`` / ``jwt.decode``;
the cryptography stays in PyJWT's algorithm objects (``HMACAlgorithm``,
``ECAlgorithm``), whose keys are prepared once, not per call. The reason is
speed on the hot path: PyJWT 2.15 checks each base64url segment one byte at a
time in Python and ``jwt.encode`` re-examines the HMAC secret (PEM, DER and
JWK probes) on every call. ``python -m bench --scenario verify --runs 3
--no-write`` measured ``KeyRing.verify`` of an HS256 org access token at
4,395 verifications per CPU second with ``jwt.decode`` (ES256: 2,298 / s) and
24,538 / s with the code below (ES256: 6,757 / s, against 9,925 / s for the
bare ECDSA verification in the same run); on this shared two-core machine the
rate moves by a third from run to run (the bare HMAC by as much). The checks
are a superset of ``jwt.decode``'s: the tests compare the two on mutated and
forged tokens (``py/tests/test_signing.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import Algorithm, ECAlgorithm, HMACAlgorithm
from jwt.exceptions import InvalidKeyError

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

_FORBIDDEN_HEADERS: Final = frozenset({"crit", "jku", "jwk", "x5u", "x5c", "b64"})
"""Headers that ask the verifier to fetch or trust keys, or to understand
extensions (``crit``; ``b64``, RFC 7797's unencoded payload): we never do
either, so a token carrying them is refused."""

_REQUIRED_CLAIMS: Final = ("iss", "aud", "exp", "iat", "sub", "jti", "client_id")
"""RFC 9068 §2.2's required claims of a JWT access token; every token of ours has them (R2)."""

_ALGORITHMS_HS256: Final = frozenset({HS256})
_ALGORITHMS_BOTH: Final = frozenset({HS256, ES256})
_ALGORITHMS_ES256: Final = frozenset({ES256})

# PyJWT's algorithm objects hold no state but the hash (and curve): one of each
# serves every thread.
_HMAC_SHA256: Final[Algorithm] = HMACAlgorithm(HMACAlgorithm.SHA256)
_ECDSA_P256_SHA256: Final[Algorithm] = ECAlgorithm(ECAlgorithm.SHA256, ec.SECP256R1)

_EXPECTED_BY_NAME: Final[Mapping[str, frozenset[str]]] = {
    name: frozenset({name}) for name in TOKEN_TYPES
}


@dataclass(frozen=True, slots=True)
class _EcKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_key: ec.EllipticCurvePublicKey


def _load_ec_keys(jwks: Sequence[Mapping[str, Any]]) -> list[_EcKey]:
    keys = []
    for jwk in jwks:
        key = ECAlgorithm.from_jwk(json.dumps(dict(jwk)))
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"signing key {jwk.get('kid')!r} is not an EC private key")
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"signing key {jwk.get('kid')!r} is not a P-256 key (ES256)")
        keys.append(_EcKey(kid=str(jwk["kid"]), private_key=key, public_key=key.public_key()))
    return keys


# -- the compact serialization, written out ---------------------------------------------

_COMPACT_JWS: Final = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
"""Exactly three base64url segments and two dots, nothing else: no padding
``=``, no whitespace, no fourth segment, no character outside ASCII. Header and
payload are non-empty; an empty signature is let through to be refused for
what it is (``alg: none`` as ``alg_not_allowed`` (T1), else ``bad_signature``)."""

_PADDING: Final = (b"", b"", b"==", b"=")
"""Padding to add, by segment length modulo 4 (1 is never valid base64)."""

_CANONICAL_LAST: Final = ("", "", "AQgw", "AEIMQUYcgkosw048")
"""By segment length modulo 4, the characters a canonical encoding may end
with: those whose unused low bits are zero (4 bits when 2 characters remain,
2 bits when 3 do). Anything else is a second spelling of the same bytes."""


_URLSAFE_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")


def _b64url_decode(segment: str) -> bytes:
    """One segment already matched by ``_COMPACT_JWS``, canonical encoding only."""
    remainder = len(segment) % 4
    if remainder == 1 or (remainder and segment[-1] not in _CANONICAL_LAST[remainder]):
        raise InvalidToken("malformed")
    try:
        # base64.urlsafe_b64decode, without its two layers of argument checks.
        return binascii.a2b_base64(
            segment.encode("ascii").translate(_URLSAFE_TO_STANDARD) + _PADDING[remainder]
        )
    except binascii.Error:  # not reachable after the checks above; fail closed anyway
        raise InvalidToken("malformed") from None


def _b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


_JSON_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_not_json
)
"""Strict JSON objects: a member name given twice is an error, not "last wins"
(RFC 7515 §5.2 allows either; two parsers must never read different claims);
``NaN`` and ``Infinity``, which Python's parser accepts, are not JSON (RFC 8259)
and refused as JavaScript's ``JSON.parse`` refuses them.
Shared by all threads like ``json.loads``'s own decoder: its only state is a
cache of member-name strings."""

_JSON_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))
"""Compact, ASCII-only: the bytes ``jwt.encode`` produces for the same dict."""


def _json_object(data: bytes) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes, or ``InvalidToken("malformed")``.

    The object must be the whole text: no whitespace around it (we never
    write any) and nothing after it.
    """
    try:
        text = data.decode("utf-8")
        value, end = _JSON_DECODER.raw_decode(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidToken("malformed") from None
    if end != len(text) or not isinstance(value, dict):
        raise InvalidToken("malformed")
    return value


def _header_segment(alg: str, kid: str | None, typ: str) -> bytes:
    """The encoded JOSE header, byte for byte what ``jwt.encode`` writes (sorted keys)."""
    header = {"alg": alg, "typ": typ} if kid is None else {"alg": alg, "kid": kid, "typ": typ}
    return _b64url_encode(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


#: Seconds between two looks at the key file's modification time (a ``stat``):
#: a change made by ``issuer keys promote`` is signed with by every running
#: process within this interval (docs/operations.md, "Key rotation").
KEY_FILE_CHECK_INTERVAL = 5.0


def _make_signer(alg: str, key: _EcKey | None) -> tuple[_EcKey | None, dict[str, bytes]]:
    """The signing key and the token headers naming its ``kid``, as one value."""
    kid = key.kid if key is not None else None
    headers = {
        token_type: _header_segment(alg, kid, typ) for token_type, typ in TYP_BY_TOKEN_TYPE.items()
    }
    return key, headers


def _file_version(source: str) -> Callable[[], object] | None:
    """A key file's identity and modification time; None for inline JSON."""
    text = source.strip()
    if text.startswith(("{", "[")):
        return None

    def version() -> object:
        st = os.stat(text)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    return version


class KeyRing:
    """Signs and verifies our tokens; thread-safe.

    ``key_source`` re-reads our own ES256 key set (``JWT_SIGNING_KEYS``). It is
    consulted only when a token names a ``kid`` we do not know, and at most
    once per ``refresh_interval`` seconds (T3): a stream of tokens with made-up
    ``kid`` values costs nothing. No ``kid`` is ever looked up anywhere else.

    ``_ec_keys`` is replaced (under the lock), never changed in place, so a
    reader that loads the attribute once sees one consistent key set without
    taking the lock; so is ``_signer`` (the signing key and the headers that
    name its ``kid``, together).

    ``key_version`` (a file's identity and modification time, when
    ``JWT_SIGNING_KEYS`` is a file) is looked at no more than once per
    ``reload_interval`` seconds, by whichever call comes first (sign, verify,
    JWKS); when it changed, the file is read again: the new first key signs,
    every listed key verifies and is published. That is how ``issuer keys
    promote`` (and ``generate --add-to``, ``retire``) reaches every running
    process and worker within :data:`KEY_FILE_CHECK_INTERVAL` seconds,
    without a restart (issue 16 P2, docs/operations.md).
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
        key_version: Callable[[], object] | None = None,
        reload_interval: float | None = None,
        accept_hs256: bool | None = None,
    ) -> None:
        if len(hmac_secret) < 32:
            raise ValueError("HS256 secret must be at least 32 bytes")
        try:
            # PyJWT's own refusals (a PEM, DER or JWK "secret"), once instead of per token.
            hmac_key: bytes = _HMAC_SHA256.prepare_key(hmac_secret)
        except InvalidKeyError as exc:
            raise ValueError(f"HS256 secret refused: {exc}") from None
        ec_keys = _load_ec_keys(es256_jwks)
        alg = signing_alg or (ES256 if ec_keys else HS256)
        if alg == ES256 and not ec_keys:
            raise ValueError("ES256 signing needs at least one ES256 key")
        if accept_hs256 is False and alg != ES256:
            raise ValueError("refusing HS256 (JWT_ACCEPT_HS256=false) needs ES256 signing keys")
        self.accept_hs256: bool = alg == HS256 if accept_hs256 is None else accept_hs256
        """False: every HS256 token is refused (L6), JWT_SECRET mints nothing.
        Default (``None``): accepted only while HS256 signs, so a ring that
        signs ES256 refuses HS256 unless told otherwise (L12)."""
        self._hmac_key = hmac_key
        self.issuer = issuer
        self.audience = audience
        self.signing_alg: Literal["HS256", "ES256"] = alg
        self._ec_keys: dict[str, _EcKey] = {key.kid: key for key in ec_keys}
        self._key_source = key_source
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_refresh = clock()
        self.refresh_count = 0
        """How many times ``key_source`` was consulted (visible for tests)."""
        self._signer = _make_signer(alg, ec_keys[0] if alg == ES256 else None)
        self._key_version = key_version if key_source is not None else None
        self._reload_interval = (
            KEY_FILE_CHECK_INTERVAL if reload_interval is None else reload_interval
        )
        self._version = key_version() if self._key_version is not None and key_version else None
        self._next_check = clock() + self._reload_interval
        self.reload_count = 0
        """How many times a changed key file was read again (visible for tests)."""

    @property
    def _signing_key(self) -> _EcKey | None:
        return self._signer[0]

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

        key_version = _file_version(raw) if source is not None else None
        return cls(
            hmac_secret=settings.jwt_secret.get_secret_value().encode(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            es256_jwks=jwks,
            signing_alg=settings.signing_alg,
            key_source=key_source,
            refresh_interval=refresh_interval,
            clock=clock,
            key_version=key_version,
            accept_hs256=settings.accepts_hs256,
        )

    @property
    def signing_kid(self) -> str | None:
        """The ``kid`` new tokens carry (``None`` when HS256 signs)."""
        return self._signing_key.kid if self._signing_key else None

    @property
    def algorithms(self) -> frozenset[str]:
        """The verification allow-list: HS256 (unless switched off, L6), plus ES256 when we hold ES256 keys."""
        if not self.accept_hs256:
            return _ALGORITHMS_ES256
        return _ALGORITHMS_BOTH if self._ec_keys else _ALGORITHMS_HS256

    # -- signing ---------------------------------------------------------------

    def sign(self, claims: TokenClaims) -> str:
        """Sign ``claims`` as a compact JWS.

        ``claims`` is valid by construction (``TokenClaims.__post_init__``
        enforces the schema, T10), so it is not validated again; it must name
        this ring's issuer and audience. The header is ``alg``, ``kid`` (ES256
        only) and ``typ`` by token type, precomputed; the payload is
        ``claims.to_dict()`` as compact JSON; both byte for byte what
        ``jwt.encode`` writes, and the signature comes from PyJWT's algorithm
        object with the key prepared once.
        """
        if not isinstance(claims, TokenClaims):
            raise TypeError("sign() takes TokenClaims (built by build_claims or validate_claims)")
        if claims.iss != self.issuer or claims.aud != self.audience:
            raise ValueError("claims name another issuer or audience than this key ring")
        self._maybe_reload()
        signing_key, header_by_type = self._signer  # one consistent pair
        payload = _b64url_encode(_JSON_ENCODER.encode(claims.to_dict()).encode())
        signing_input = header_by_type[claims.type] + b"." + payload
        if signing_key is not None:
            signature = _ECDSA_P256_SHA256.sign(signing_input, signing_key.private_key)
        else:
            signature = _HMAC_SHA256.sign(signing_input, self._hmac_key)
        return (signing_input + b"." + _b64url_encode(signature)).decode("ascii")

    # -- verification ------------------------------------------------------------

    def verify(self, token: str, *, expected_type: str | Collection[str]) -> TokenClaims:
        """Verify one of our tokens and return its claims, or raise ``InvalidToken``.

        Every check, in this order (the reason in brackets):

        1. ``expected_type`` names token types we issue (else ``ValueError``:
           a bug in the caller, not a bad token).
        2. The token is a ``str`` of at most 8,192 characters [malformed].
        3. It is exactly three base64url segments joined by two dots, as one
           regular expression over the whole token: no ``=`` padding,
           whitespace, other characters or extra segments; header and payload
           non-empty (an empty signature fails at 5 or 8) [malformed].
        4. The header segment is canonical base64url (its length is not 1
           modulo 4 and its unused trailing bits are zero) of UTF-8 JSON text
           that is one object, no whitespace around it, with no duplicate
           member names [malformed].
        5. Header ``alg`` is a string on the allow-list: HS256, and ES256 only
           while we hold ES256 keys; never ``none`` (T1) [alg_not_allowed].
        6. No header asks to fetch or trust a key or to understand an
           extension: ``jku``, ``jwk``, ``x5u``, ``x5c``, ``crit``, ``b64``
           [unexpected_header].
        7. The key, from ``alg`` alone (T2, T3): HS256 uses our secret and a
           token carrying any ``kid`` is refused [kid_alg_mismatch when it
           names one of our ES256 keys, else unknown_kid]; ES256 needs a
           non-empty string ``kid`` [missing_kid] naming one of our keys, the
           key set re-read at most once per ``refresh_interval`` for an
           unknown one [unknown_kid].
        8. Payload and signature segments are canonical base64url too
           [malformed], and the signature over the first two segments, as
           sent, verifies with that key through PyJWT's ``HMACAlgorithm``
           (constant-time compare) or ``ECAlgorithm`` (P-256, 64-byte raw
           signature) [bad_signature].
        9. The payload is UTF-8 JSON text like the header: one object, no
           whitespace around it, no duplicate member names [malformed].
        10. ``iss``, ``aud``, ``exp``, ``iat``, ``sub``, ``jti`` are present and
            not null [missing_<claim>]; ``iss`` is a string equal to ours
            [wrong_issuer]; ``aud`` is not empty [missing_aud] and is a string
            equal to ours, never a list (T4) [wrong_audience]; ``sub`` and
            ``jti`` are strings [malformed].
        11. ``exp`` and ``iat`` are integers, not booleans [bad_claims]; the
            token is dead at ``exp`` [expired] and ``iat`` is at most 60 s
            ahead of our clock (T6) [issued_in_future].
        12. The payload is exactly the claim schema (T10) [bad_claims].
        13. ``type`` is one of ``expected_type`` [wrong_type] and header
            ``typ`` is the string that goes with it (T5) [wrong_typ].

        The outcomes are those of the ``jwt.decode``-based code this replaced
        (``test_signing.py`` compares the two), with these deliberate
        differences: padded or otherwise non-canonical segments, duplicate
        JSON member names, header or payload JSON not in UTF-8 or with
        whitespace around it or holding ``NaN``/``Infinity``, and any ``b64``
        header are refused (PyJWT
        accepts a padded signature, keeps the last duplicate, reads UTF-16/32
        and whitespace, and ignores ``b64: true``); a token that is
        not three base64url segments is ``malformed`` before its header is
        read; an HS256 token with ``"kid": null`` is ``unknown_kid``; and a
        lone surrogate in the token is ``malformed``, where ``jwt.decode``
        raised ``UnicodeEncodeError`` (a 500).
        """
        if isinstance(expected_type, str):
            expected = _EXPECTED_BY_NAME.get(expected_type)
            if expected is None:
                raise ValueError(f"expected_type must be among {sorted(TOKEN_TYPES)}")
        else:
            expected = frozenset(expected_type)
            if not expected or not expected <= TOKEN_TYPES:
                raise ValueError(f"expected_type must be among {sorted(TOKEN_TYPES)}")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed")
        segments = _COMPACT_JWS.fullmatch(token)
        if segments is None:
            raise InvalidToken("malformed")
        header_b64, payload_b64, signature_b64 = segments.groups()
        header = _json_object(_b64url_decode(header_b64))

        alg = header.get("alg")
        self._maybe_reload()
        ec_keys = self._ec_keys  # one consistent snapshot (class docstring)
        if not isinstance(alg, str) or alg not in (
            _ALGORITHMS_BOTH if ec_keys else _ALGORITHMS_HS256
        ):
            raise InvalidToken("alg_not_allowed")
        if alg == HS256 and not self.accept_hs256:
            raise InvalidToken("alg_not_allowed")  # L6: HS256 switched off
        if not _FORBIDDEN_HEADERS.isdisjoint(header):
            raise InvalidToken("unexpected_header")

        key: bytes | ec.EllipticCurvePublicKey
        if alg == HS256:
            if "kid" in header:
                # HS256 tokens never carry a kid; one naming an ES256 key is an
                # algorithm-confusion attempt (T2/T3).
                kid = header["kid"]
                known = isinstance(kid, str) and kid in ec_keys
                raise InvalidToken("kid_alg_mismatch" if known else "unknown_kid")
            algorithm, key = _HMAC_SHA256, self._hmac_key
        else:  # ES256, the only other entry of the allow-list
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidToken("missing_kid")
            ec_key = ec_keys.get(kid)
            if ec_key is None:
                ec_key = self._find_ec_key(kid)
                if ec_key is None:
                    raise InvalidToken("unknown_kid")
            algorithm, key = _ECDSA_P256_SHA256, ec_key.public_key

        payload_json = _b64url_decode(payload_b64)
        signature = _b64url_decode(signature_b64)
        signing_input = token[: segments.end(2)].encode("ascii")
        if not algorithm.verify(signing_input, key, signature):
            raise InvalidToken("bad_signature")

        payload = _json_object(payload_json)
        for claim in _REQUIRED_CLAIMS:
            if payload.get(claim) is None:
                raise InvalidToken(f"missing_{claim}")
        # Exact string equality, never prefix or membership (T4).
        iss = payload["iss"]
        if not isinstance(iss, str) or iss != self.issuer:
            raise InvalidToken("wrong_issuer")
        aud = payload["aud"]
        if not aud:
            raise InvalidToken("missing_aud")
        if not isinstance(aud, str) or aud != self.audience:
            raise InvalidToken("wrong_audience")
        if not isinstance(payload["sub"], str) or not isinstance(payload["jti"], str):
            raise InvalidToken("malformed")
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

    def _maybe_reload(self) -> None:
        """Read the key file again if it changed; looked at once per reload interval."""
        if self._key_version is None or self._clock() < self._next_check:
            return
        with self._lock:
            now = self._clock()
            if now < self._next_check:
                return
            self._next_check = now + self._reload_interval
            try:
                version = self._key_version()
                if version == self._version:
                    return
                assert self._key_source is not None
                fresh = _load_ec_keys(self._key_source())
            except (OSError, ValueError) as exc:
                log.warning("re-reading JWT_SIGNING_KEYS failed, keeping current keys: %s", exc)
                return
            self._version = version
            self.reload_count += 1
            self._ec_keys = {key.kid: key for key in fresh}
            if self.signing_alg == ES256:
                old = self.signing_kid
                self._signer = _make_signer(ES256, fresh[0])
                if fresh[0].kid != old:
                    log.warning("JWT_SIGNING_KEYS changed: %s now signs", fresh[0].kid)

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
        self._maybe_reload()
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
