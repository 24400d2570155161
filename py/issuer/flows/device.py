"""The device authorization grant (RFC 8628): sign-in where no redirect reaches the extension.

* ``start``: a device code (a 256-bit secret for the polling client) and a
  user code (8 letters the user types, RFC 8628 §6.1), both stored as hashes
  only (R4, T7); the user code under an HMAC key derived from
  ``JWT_SECRET``, because 20^8 codes are few enough to hash through offline.
* ``decide``: the signed-in user enters the user code on ``/vscode/device``
  and approves with an account (Personal or an org, seat-gated exactly as on
  ``/vscode/authorize``) or denies. Wrong guesses are counted in the
  database, per user (10 in 15 minutes) and for everyone (100 in 15
  minutes, R6): past either the page refuses every code for a while.
* ``preview``: what the page shows for a prefilled code before the user
  decides: the client that asked and when (R6); a wrong code is a guess.
* Creation is throttled in the database (30 codes a minute per client, 120
  in all, R6): ``start`` then raises :class:`DeviceCodesThrottled` (429).
* ``device_grant``: the token endpoint's
  ``urn:ietf:params:oauth:grant-type:device_code``. The database answers
  ``authorization_pending`` / ``slow_down`` / ``access_denied`` /
  ``expired_token`` or hands out the approval exactly once (a row lock), and
  the access token re-resolves the org like every grant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from issuer.clerk import ClerkSession
from issuer.errors import (
    AccessDenied,
    AuthorizationPending,
    BadRequest,
    DeviceCodesThrottled,
    ExpiredToken,
    InvalidGrant,
    SlowDown,
)
from issuer.flows.minting import new_secret, token_hash
from issuer.flows.oauth import TokenGrant, start_family
from issuer.flows.scope import Scope, check_org_id, resolve_scope
from issuer.rpc import RpcConflict, RpcError
from issuer.rpc_generated import DeviceCodePreview
from issuer.service import Issuer

GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_PREFIX: Final = "dc_"
USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"
"""RFC 8628 §6.1: 20 consonants, no vowels (no words), no digits (no 0/O, 1/I)."""
USER_CODE_LENGTH: Final = 8
"""20^8 = 2.56e10 codes (34.5 bits), with guesses bounded by the database."""
DEVICE_CODE_TTL: Final = 600
"""Seconds a device code lives (RFC 8628 §3.2 expires_in)."""
POLL_INTERVAL: Final = 5
"""Seconds between polls (RFC 8628 §3.2 interval; its default)."""


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class Decision:
    approved: bool
    client_id: str
    scope: Scope | None


class UserCodeRefused(BadRequest):
    """The page's answer to a user code it cannot use; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"user code refused: {reason}")


def new_user_code() -> str:
    """``XXXX-XXXX`` from :data:`USER_CODE_ALPHABET` (the dash is for reading only)."""
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    return f"{letters[:4]}-{letters[4:]}"


def normalize_user_code(text: str) -> str | None:
    """The 8 letters of what the user typed (case, dashes and spaces ignored), or None."""
    letters = "".join(ch for ch in text.upper() if ch not in "- \t")
    if len(letters) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in letters):
        return None
    return letters


def user_code_hash(issuer: Issuer, letters: str) -> str:
    """HMAC-SHA-256 under a key derived from ``JWT_SECRET``: the only form stored."""
    secret = issuer.settings.jwt_secret.get_secret_value().encode()
    key = hmac.new(secret, b"issuer device user code v1", hashlib.sha256).digest()
    return hmac.new(key, letters.encode(), hashlib.sha256).hexdigest()


def start(issuer: Issuer, client_id: str) -> DeviceAuthorization:
    """A new pending device authorization for a registered client (checked by the caller)."""
    device_code = new_secret(DEVICE_PREFIX)
    for _ in range(5):  # a user-code collision is a unique violation: draw again
        user_code = new_user_code()
        try:
            issuer.rpc.create_device_code(
                p_device_code_hash=token_hash(device_code),
                p_user_code_hash=user_code_hash(issuer, normalize_user_code(user_code) or ""),
                p_client_id=client_id,
                p_ttl_seconds=DEVICE_CODE_TTL,
                p_interval_seconds=POLL_INTERVAL,
            )
        except RpcConflict:
            continue
        except RpcError as exc:
            if exc.sqlstate == "54000":  # R6: too many codes this minute
                raise DeviceCodesThrottled(
                    "device codes are being created too fast; retry in a minute"
                ) from exc
            raise
        return DeviceAuthorization(device_code, user_code, DEVICE_CODE_TTL, POLL_INTERVAL)
    raise RuntimeError("no free user code after 5 draws")  # 2.56e10 codes: does not happen


def preview(issuer: Issuer, session: ClerkSession, user_code: str) -> DeviceCodePreview:
    """The pending code's client and creation time, for the page (R6); else ``UserCodeRefused``.

    A wrong code counts as a wrong guess, as in :func:`decide`: the preview is
    no free oracle.
    """
    letters = normalize_user_code(user_code)
    if letters is None:
        raise UserCodeRefused("malformed")
    result = issuer.rpc.preview_device_code(
        p_user_code_hash=user_code_hash(issuer, letters), p_clerk_user_id=session.user_id
    )
    if not result.ok:
        raise UserCodeRefused(result.reason or "unknown_code")
    return result


def decide(
    issuer: Issuer,
    session: ClerkSession,
    *,
    user_code: str,
    approve: bool,
    clerk_org_id: str | None = None,
) -> Decision:
    """Approve (with the account chosen) or deny the device authorization of ``user_code``.

    An org is checked (Clerk membership and an active seat) before the code is
    touched: ``OrgScopeDenied`` leaves the code pending, so the user can pick
    another account. ``UserCodeRefused`` with reason ``malformed``,
    ``unknown_code``, ``expired``, ``already_decided`` or ``rate_limited``.
    """
    letters = normalize_user_code(user_code)
    if letters is None:
        raise UserCodeRefused("malformed")
    scope: Scope | None = None
    if approve:
        scope = resolve_scope(
            issuer, session, check_org_id(clerk_org_id), require_org=bool(clerk_org_id)
        )
    result = issuer.rpc.decide_device_code(
        p_user_code_hash=user_code_hash(issuer, letters),
        p_clerk_user_id=session.user_id,
        p_approve=approve,
        p_clerk_org_id=scope.clerk_org_id if scope else None,
        p_email=session.email if approve else None,
    )
    if not result.ok:
        raise UserCodeRefused(result.reason or "unknown_code")
    return Decision(approve, str(result.client_id), scope)


def device_grant(
    issuer: Issuer,
    *,
    device_code: str,
    client_id: str,
    clerk_org_id: str | None = None,
    require_org: bool = False,
) -> TokenGrant:
    """RFC 8628 §3.4-3.5: a token response once the user approved, else the reason to wait or stop."""
    if not device_code:
        raise BadRequest("device_code is required")
    if not device_code.startswith(DEVICE_PREFIX) or len(device_code) > 200:
        raise InvalidGrant("not a device code")
    result = issuer.rpc.poll_device_code(
        p_device_code_hash=token_hash(device_code), p_client_id=client_id
    )
    if not result.ok:
        error = result.error
        if error == "authorization_pending":
            raise AuthorizationPending("the user has not answered yet")
        if error == "slow_down":
            raise SlowDown(result.interval_seconds or POLL_INTERVAL)
        if error == "access_denied":
            raise AccessDenied("the user denied the request")
        if error == "expired_token":
            raise ExpiredToken("the device code expired; start again")
        raise InvalidGrant(f"device code rejected: {result.reason or 'invalid'}")
    return start_family(
        issuer,
        granted=result,
        clerk_org_id=clerk_org_id,
        require_org=require_org,
        client_id=client_id,
    )
