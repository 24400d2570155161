"""Clerk: verify session tokens, and list a user's organization memberships.

Clerk is the identity provider; nothing it says is trusted without a check:

* Session tokens are RS256 JWTs verified against Clerk's JWKS
  (``CLERK_JWKS_URL``), cached by ``kid``. A token with an unknown ``kid``
  triggers at most one JWKS re-fetch per ``refresh_interval`` (Clerk rotates
  rarely; an attacker inventing ``kid`` values must not make us hammer Clerk).
  ``exp``/``nbf`` allow at most 5 s of clock skew. When
  ``CLERK_AUTHORIZED_PARTIES`` is configured, ``azp`` must be present and
  listed (stricter than Clerk's SDKs, which accept a missing ``azp``): our
  session tokens always come from our own pages. ``sts = pending`` sessions
  (sign-in not finished) are refused.
* Memberships come from the Backend API
  (``GET /users/{user_id}/organization_memberships``, ``limit``/``offset``
  paging). Timeouts, transport errors and non-success answers raise
  :class:`~issuer.errors.ClerkUnavailable`: callers fail closed (A3).

HTTP is synchronous (httpx): the issuer's handlers run in a worker thread, and
both classes are thread-safe.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from issuer.errors import ClerkUnavailable, ConfigError, InvalidToken

if TYPE_CHECKING:
    from issuer.settings import Settings

log = logging.getLogger(__name__)

RS256: Final = "RS256"
MAX_CLOCK_SKEW_SECONDS: Final = 5
MAX_TOKEN_LENGTH: Final = 16384
MIN_RSA_BITS: Final = 2048
MAX_PAGES: Final = 100
"""Upper bound on membership pages, so a misbehaving API cannot loop us forever."""

_FORBIDDEN_HEADERS: Final = frozenset({"crit", "jku", "jwk", "x5u", "x5c"})

ORG_ADMIN: Final = "org:admin"
ORG_MEMBER: Final = "org:member"

_ROLE_ALIASES: Final[Mapping[str, str]] = {
    "admin": ORG_ADMIN,
    "member": ORG_MEMBER,
    # Clerk's role keys before custom roles (2023): admin / basic_member.
    "basic_member": ORG_MEMBER,
}


def normalize_org_role(role: str | None) -> str | None:
    """One spelling per role, whatever the token version (A5).

    Clerk's default role keys are ``org:admin`` and ``org:member``; v2 session
    tokens drop the ``org:`` prefix (``o.rol = "admin"``), and instances older
    than custom roles use ``admin`` / ``basic_member``. These all map to
    ``org:admin`` / ``org:member``. Any other (custom) role keeps its key with
    exactly one ``org:`` prefix, e.g. ``billing`` → ``org:billing``.
    """
    if role is None:
        return None
    key = role.strip().removeprefix("org:")
    if not key:
        return None
    return _ROLE_ALIASES.get(key, f"org:{key}")


@dataclass(frozen=True, slots=True)
class ClerkSession:
    """What a verified Clerk session token tells us."""

    user_id: str
    session_id: str
    email: str | None
    active_org_id: str | None
    active_org_role: str | None
    version: int


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's membership of one organization (role normalized)."""

    org_id: str
    role: str | None
    org_name: str | None = None
    org_slug: str | None = None
    membership_id: str | None = None


class ClerkSessionVerifier:
    """Verifies Clerk session tokens against Clerk's JWKS."""

    def __init__(
        self,
        jwks_url: str,
        *,
        authorized_parties: Sequence[str] = (),
        issuer: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 5.0,
        jwks_headers: Mapping[str, str] | None = None,
        leeway: float = MAX_CLOCK_SKEW_SECONDS,
        refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if leeway > MAX_CLOCK_SKEW_SECONDS:
            raise ValueError(f"leeway must be at most {MAX_CLOCK_SKEW_SECONDS} s")
        self._jwks_url = jwks_url
        self._authorized_parties = frozenset(authorized_parties)
        self._issuer = issuer
        self._http = http or httpx.Client()
        self._owns_http = http is None
        self._timeout = timeout
        self._jwks_headers = dict(jwks_headers or {})
        self._leeway = leeway
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._last_fetch: float | None = None
        self.fetch_count = 0
        """How many times the JWKS was fetched (visible for tests)."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, http: httpx.Client | None = None
    ) -> ClerkSessionVerifier:
        """The verifier the issuer runs with; needs ``CLERK_JWKS_URL``.

        Clerk's Backend API JWKS (``{CLERK_API_URL}/jwks``) needs the secret
        key as a bearer token; the Frontend API's ``/.well-known/jwks.json``
        is public. The secret is sent only to the Backend API.
        """
        if settings.clerk_jwks_url is None:
            raise ConfigError("CLERK_JWKS_URL: is required", variable="CLERK_JWKS_URL")
        headers = {}
        if settings.clerk_secret_key is not None and settings.clerk_jwks_url.startswith(
            settings.clerk_api_url + "/"
        ):
            headers["Authorization"] = f"Bearer {settings.clerk_secret_key.get_secret_value()}"
        return cls(
            settings.clerk_jwks_url,
            authorized_parties=settings.clerk_authorized_parties,
            http=http,
            timeout=settings.clerk_timeout,
            jwks_headers=headers,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def verify(self, token: str) -> ClerkSession:
        """Verify a Clerk session token; raise ``InvalidToken`` (or
        ``ClerkUnavailable`` when the JWKS cannot be fetched)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed") from None
        if header.get("alg") != RS256:
            raise InvalidToken("alg_not_allowed")
        if _FORBIDDEN_HEADERS & header.keys():
            raise InvalidToken("unexpected_header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("missing_kid")
        key = self._key(kid)
        if key is None:
            raise InvalidToken("unknown_kid")

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[RS256],
                issuer=self._issuer,
                leeway=self._leeway,
                # Session tokens have no audience; an aud added by a custom
                # claim template must not make verification fail.
                options={"require": ["exp", "iat", "sub", "sid"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not_yet_valid") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad_signature") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong_issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"missing_{exc.claim}") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed") from None
        return self._session(claims)

    def _session(self, claims: Mapping[str, Any]) -> ClerkSession:
        if self._authorized_parties and claims.get("azp") not in self._authorized_parties:
            raise InvalidToken("unauthorized_party")
        if claims.get("sts") == "pending":
            raise InvalidToken("session_pending")
        user_id, session_id = claims.get("sub"), claims.get("sid")
        if not isinstance(user_id, str) or not user_id:
            raise InvalidToken("missing_sub")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidToken("missing_sid")
        version = claims.get("v", 1)
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidToken("malformed")

        org_id: object = None
        org_role: object = None
        if version == 2:
            org = claims.get("o")
            if isinstance(org, Mapping):
                org_id, org_role = org.get("id"), org.get("rol")
        elif version == 1:
            org_id, org_role = claims.get("org_id"), claims.get("org_role")
        # Another version: we do not guess its org format; no active org means
        # membership is asked of the Backend API instead (still correct).
        if not isinstance(org_id, str) or not org_id:
            org_id, org_role = None, None
        email = claims.get("email")
        return ClerkSession(
            user_id=user_id,
            session_id=session_id,
            email=email if isinstance(email, str) and email else None,
            active_org_id=org_id,
            active_org_role=normalize_org_role(org_role) if isinstance(org_role, str) else None,
            version=version,
        )

    def _key(self, kid: str) -> rsa.RSAPublicKey | None:
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            now = self._clock()
            if self._last_fetch is not None and now - self._last_fetch < self._refresh_interval:
                if not self._keys:
                    # The last fetch failed or was empty: we can verify nothing.
                    raise ClerkUnavailable("Clerk's signing keys are not available")
                return None
            self._last_fetch = now
        # Fetch outside the lock: verifications with known kids go on meanwhile,
        # and the gate above lets only one caller per interval get here.
        keys = self._fetch_jwks()
        with self._lock:
            self._keys = keys
        return keys.get(kid)

    def _fetch_jwks(self) -> dict[str, rsa.RSAPublicKey]:
        self.fetch_count += 1
        try:
            response = self._http.get(
                self._jwks_url, headers=self._jwks_headers, timeout=self._timeout
            )
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("fetching Clerk JWKS failed: %s", type(exc).__name__)
            raise ClerkUnavailable("could not fetch Clerk's signing keys") from None
        keys: dict[str, rsa.RSAPublicKey] = {}
        entries = document.get("keys") if isinstance(document, dict) else None
        for jwk in entries if isinstance(entries, list) else []:
            key = _rsa_public_key(jwk)
            if key is not None:
                keys[jwk["kid"]] = key
        if not keys:
            log.warning("Clerk JWKS at %s holds no usable RS256 key", self._jwks_url)
        return keys


def _rsa_public_key(jwk: object) -> rsa.RSAPublicKey | None:
    """An RS256 signing key from a JWKS entry, or ``None`` for anything else."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or "d" in jwk:
        return None
    if not isinstance(jwk.get("kid"), str) or jwk.get("alg", RS256) != RS256:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        key = RSAAlgorithm.from_jwk(json.dumps(jwk))
    except (jwt.InvalidKeyError, ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        return None
    return key


class ClerkClient:
    """Clerk Backend API: the memberships endpoint, with a timeout, failing closed."""

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        *,
        timeout: float = 5.0,
        page_size: int = 100,
        http: httpx.Client | None = None,
    ) -> None:
        if not 1 <= page_size <= 500:
            raise ValueError("page_size must be between 1 and 500 (Clerk's limit)")
        self._api_url = api_url.rstrip("/")
        self._secret_key = secret_key
        self._timeout = timeout
        self._page_size = page_size
        self._http = http or httpx.Client()
        self._owns_http = http is None

    @classmethod
    def from_settings(cls, settings: Settings, *, http: httpx.Client | None = None) -> ClerkClient:
        """The client the issuer runs with; needs ``CLERK_SECRET_KEY``."""
        if settings.clerk_secret_key is None:
            raise ConfigError("CLERK_SECRET_KEY: is required", variable="CLERK_SECRET_KEY")
        return cls(
            settings.clerk_api_url,
            settings.clerk_secret_key.get_secret_value(),
            timeout=settings.clerk_timeout,
            http=http,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ClerkClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def list_memberships(self, user_id: str) -> list[Membership]:
        """All of the user's memberships, every page."""
        return list(self.iter_memberships(user_id))

    def iter_memberships(self, user_id: str) -> Iterator[Membership]:
        """The user's memberships page by page (``limit``/``offset``), lazily,
        so a caller looking for one org stops fetching once it is found."""
        if not user_id:
            raise ValueError("user_id must be non-empty")
        url = f"{self._api_url}/users/{quote(user_id, safe='')}/organization_memberships"
        offset = 0
        for _ in range(MAX_PAGES):
            page, total = self._page(url, user_id, offset)
            yield from page
            offset += len(page)
            if not page or offset >= total:
                return
        log.error("Clerk memberships of %s exceed %d pages; refusing", user_id, MAX_PAGES)
        raise ClerkUnavailable("too many membership pages")

    def _page(self, url: str, user_id: str, offset: int) -> tuple[list[Membership], int]:
        try:
            response = self._http.get(
                url,
                params={"limit": self._page_size, "offset": offset},
                headers={"Authorization": f"Bearer {self._secret_key}"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            log.warning("Clerk memberships of %s: %s", user_id, type(exc).__name__)
            raise ClerkUnavailable("Clerk did not answer") from None
        if response.status_code == 404:
            return [], 0
        if response.status_code != 200:
            log.warning("Clerk memberships of %s: HTTP %d", user_id, response.status_code)
            raise ClerkUnavailable(f"Clerk answered HTTP {response.status_code}")
        try:
            body = response.json()
            total = body["total_count"]
            page = [_membership(item) for item in body["data"]]
            if isinstance(total, bool) or not isinstance(total, int):
                raise TypeError("total_count")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("Clerk memberships of %s: malformed answer (%s)", user_id, exc)
            raise ClerkUnavailable("Clerk answered with an unexpected shape") from None
        return page, total


def _membership(item: Mapping[str, Any]) -> Membership:
    """Parse one ``organization_membership`` object of the Backend API."""
    org = item["organization"]
    org_id = org["id"]
    role = item.get("role")
    if not isinstance(org_id, str) or not org_id:
        raise TypeError("organization.id")
    if role is not None and not isinstance(role, str):
        raise TypeError("role")
    name, slug, membership_id = org.get("name"), org.get("slug"), item.get("id")
    return Membership(
        org_id=org_id,
        role=normalize_org_role(role),
        org_name=name if isinstance(name, str) else None,
        org_slug=slug if isinstance(slug, str) else None,
        membership_id=membership_id if isinstance(membership_id, str) else None,
    )
