"""The new-token cookie: AES-GCM under a key derived from ``JWT_SECRET``, bound to the session.

The generate POST answers with a 303 and puts the new token in this
short-lived cookie; the dashboard opens it, shows the token once and deletes
the cookie. The session id is the associated data, so the cookie opens only
for the session that asked; no server-side store is needed.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from issuer.api.pages.keys import b64, derived_key, unb64
from issuer.clerk import ClerkSession
from issuer.service import Issuer

NEW_TOKEN_COOKIE = "issuer_new_token"
NEW_TOKEN_COOKIE_PATH = "/dashboard/tokens"
NEW_TOKEN_COOKIE_SECONDS = 120
_PURPOSE = b"new token v1"


def seal(issuer: Issuer, session: ClerkSession, data: dict[str, Any]) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(derived_key(issuer, _PURPOSE)).encrypt(
        nonce, json.dumps(data).encode(), session.session_id.encode()
    )
    return b64(nonce + sealed)


def unseal(issuer: Issuer, session: ClerkSession, value: str) -> dict[str, Any] | None:
    """The sealed data, or None when the cookie is not this session's or was tampered with."""
    try:
        raw = unb64(value)
        plain = AESGCM(derived_key(issuer, _PURPOSE)).decrypt(
            raw[:12], raw[12:], session.session_id.encode()
        )
        data = json.loads(plain)
    except (ValueError, InvalidTag):
        return None
    return data if isinstance(data, dict) else None
