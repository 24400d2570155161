"""Keys the pages derive from ``JWT_SECRET``, one per purpose, and the base64url they use.

Every process with the same ``JWT_SECRET`` derives the same keys, so a CSRF
token or a sealed cookie made by one worker opens on any other (P2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from issuer.service import Issuer


def derived_key(issuer: Issuer, purpose: bytes) -> bytes:
    """HMAC-SHA256(``JWT_SECRET``, ``"issuer pages: " + purpose``)."""
    secret = issuer.settings.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, b"issuer pages: " + purpose, hashlib.sha256).digest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
