"""Claims → signed token, and the opaque secrets (codes, refresh tokens) we hash.

The database stores only SHA-256 hashes of tokens and codes (T7): a leaked
table cannot be replayed. Opaque secrets carry a prefix so a refresh token is
recognisably not a JWT and can never pass as a bearer token (T5).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from issuer.claims import SESSION_CLIENT_ID, OrgAttribution, TokenClaims, build_claims
from issuer.service import Issuer

REFRESH_PREFIX = "rt_"
CODE_PREFIX = "ac_"


def token_hash(token: str) -> str:
    """The only form in which a token or code reaches the database."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Minted:
    token: str
    claims: TokenClaims

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.claims.exp, tz=UTC)

    @property
    def expires_in(self) -> int:
        return self.claims.exp - self.claims.iat


def mint(
    issuer: Issuer,
    *,
    sub: str,
    email: str | None,
    token_type: str,
    attribution: OrgAttribution | None,
    ttl_seconds: int,
    client_id: str = SESSION_CLIENT_ID,
) -> Minted:
    """``client_id``: the OAuth client for the grants; tokens for a Clerk session keep the default."""
    claims = build_claims(
        sub,
        email,
        token_type,
        attribution,
        issuer=issuer.settings.jwt_issuer,
        audience=issuer.settings.jwt_audience,
        ttl_seconds=ttl_seconds,
        client_id=client_id,
    )
    return Minted(issuer.keys.sign(claims), claims)
