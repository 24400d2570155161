"""CSRF: a token bound to the Clerk session in every form, and the cross-site check."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from fastapi import Request

from issuer.api.pages.keys import b64, derived_key
from issuer.clerk import ClerkSession
from issuer.service import Issuer

CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE_SECONDS = 12 * 3600


def _csrf_mac(issuer: Issuer, session_id: str, issued: str, nonce: str) -> str:
    message = f"{session_id}|{issued}|{nonce}".encode()
    return b64(hmac.new(derived_key(issuer, b"csrf v1"), message, hashlib.sha256).digest())


def csrf_token(issuer: Issuer, session: ClerkSession, *, now: float | None = None) -> str:
    """``issued.nonce.mac``: valid for this Clerk session for ``CSRF_MAX_AGE_SECONDS``."""
    issued = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(12)
    return f"{issued}.{nonce}.{_csrf_mac(issuer, session.session_id, issued, nonce)}"


def csrf_valid(
    issuer: Issuer, session: ClerkSession, token: str, *, now: float | None = None
) -> bool:
    parts = token.split(".") if 0 < len(token) <= 200 else []
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    issued, nonce, mac = parts
    age = (time.time() if now is None else now) - int(issued)
    if not -60 <= age <= CSRF_MAX_AGE_SECONDS:
        return False
    return hmac.compare_digest(mac, _csrf_mac(issuer, session.session_id, issued, nonce))


def cross_site(request: Request) -> bool:
    """A browser says this POST comes from another site (checked before the token)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return origin == "null" or urlsplit(origin).netloc not in hosts - {None}


def csrf_refused(request: Request, issuer: Issuer, session: ClerkSession, token: str) -> bool:
    return cross_site(request) or not csrf_valid(issuer, session, token)
