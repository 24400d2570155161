"""The issuer's exception hierarchy: errors are values with names.

Every error the issuer raises on purpose is an :class:`IssuerError`. Each
class carries a stable machine ``code`` and an HTTP ``status`` so that the HTTP
layer maps errors to responses in exactly one place (``error.code`` becomes
the JSON ``error`` field, ``error.status`` the status code).

Messages are written to be safe to show a client: they never contain a token,
a secret or a value read from the environment. Anything else (a bug, an
unexpected library exception) is not an ``IssuerError`` and surfaces as a 500.
"""

from __future__ import annotations

from typing import ClassVar


class IssuerError(Exception):
    """Base class: a named failure with a stable ``code`` and HTTP ``status``."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.code
        super().__init__(self.message)

    def challenge(self) -> str | None:
        """The ``WWW-Authenticate`` value of this error's answer, if it needs one."""
        return None


class ConfigError(IssuerError):
    """A configuration variable is missing or invalid; start-up must stop.

    ``variable`` names the offending environment variable (T9) when known.
    """

    code = "config_error"
    status = 500

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        self.variable = variable
        super().__init__(message)


class BadRequest(IssuerError):
    """The request is malformed (OAuth ``invalid_request``)."""

    code = "invalid_request"
    status = 400


class InvalidClient(IssuerError):
    """Token endpoint: the client is unknown or sent no ``client_id`` (RFC 6749 §5.2).

    ``scheme`` is the authentication scheme of the request's ``Authorization``
    header, if it had one: RFC 6749 §5.2 then wants a ``WWW-Authenticate``
    challenge of that scheme. Our clients are public (``none``), so without
    one there is no challenge to send.
    """

    code = "invalid_client"
    status = 401

    def __init__(self, message: str, *, scheme: str | None = None) -> None:
        self.scheme = scheme
        super().__init__(message)

    def challenge(self) -> str | None:
        if not self.scheme:
            return None
        return f'{self.scheme} realm="token endpoint"'


class InvalidGrant(IssuerError):
    """A code, verifier or refresh token is wrong, expired or reused (OAuth)."""

    code = "invalid_grant"
    status = 400


MISSING_BEARER_TOKEN = "missing_bearer_token"
"""The ``InvalidToken`` reason of a request without a bearer token at all."""


class AuthorizationPending(IssuerError):
    """Device grant (RFC 8628 §3.5): the user has not approved or denied yet; poll again."""

    code = "authorization_pending"
    status = 400


class DeviceCodesThrottled(IssuerError):
    """Device authorization: codes are being created too fast (R6); retry in a minute (429)."""

    code = "slow_down"
    status = 429


class SlowDown(IssuerError):
    """Device grant: polled faster than the interval, which grew by 5 seconds (RFC 8628 §3.5)."""

    code = "slow_down"
    status = 400

    def __init__(self, interval: int) -> None:
        self.interval = interval
        super().__init__(f"poll at most every {interval} seconds")


class ExpiredToken(IssuerError):
    """Device grant: the device code expired before it was redeemed (RFC 8628 §3.5)."""

    code = "expired_token"
    status = 400


class AccessDenied(IssuerError):
    """Device grant: the user denied the request (RFC 8628 §3.5)."""

    code = "access_denied"
    status = 400


class InvalidToken(IssuerError):
    """A bearer token (ours or Clerk's) failed verification.

    ``reason`` is a short fixed identifier (``expired``, ``bad_signature``,
    ``wrong_type`` ...) chosen by the verifier, never text from the token, so it
    may be logged and returned as an ``error_description``.
    """

    code = "invalid_token"
    status = 401

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid token: {reason}")

    def challenge(self) -> str:
        """RFC 6750 §3.1: no error code when the request carried no credentials."""
        if self.reason == MISSING_BEARER_TOKEN:
            return "Bearer"
        return 'Bearer error="invalid_token"'


class Forbidden(IssuerError):
    """Authenticated, but not allowed to do this."""

    code = "forbidden"
    status = 403


class OrgScopeDenied(Forbidden):
    """Org scope was requested (and required) but cannot be granted.

    ``reason`` is one of ``not_a_member``, ``no_active_seat``,
    ``clerk_unavailable`` (see :mod:`issuer.attribution`).
    """

    code = "org_scope_denied"
    status = 403

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"organization scope denied: {reason}")


class OrgScopeLost(Forbidden):
    """A refresh of an org-scoped session found its seat or membership gone (L2).

    Nothing is issued: the payer never changes without the user choosing.
    ``clerk_org_id`` names the lost organization; ``reason`` is one of
    ``not_a_member``, ``no_active_seat``, ``clerk_unavailable``.
    """

    code = "org_scope_lost"
    status = 403

    def __init__(self, clerk_org_id: str, reason: str) -> None:
        self.clerk_org_id = clerk_org_id
        self.reason = reason
        super().__init__(
            f"organization scope lost: {clerk_org_id} ({reason}); "
            "sign in again and choose personal or another organization"
        )


class OAuthOrgScopeLost(InvalidGrant):
    """:class:`OrgScopeLost` at the OAuth token endpoint: RFC 6749 ``invalid_grant``.

    ``error_description`` starts with ``org_scope_lost``; the body also names
    the organization (``clerk_org_id``) and the ``reason``.
    """

    def __init__(self, clerk_org_id: str, reason: str) -> None:
        self.clerk_org_id = clerk_org_id
        self.reason = reason
        super().__init__(
            f"org_scope_lost: the seat or membership in {clerk_org_id} is gone ({reason}); "
            "sign in again and choose personal or another organization"
        )


class NotFound(IssuerError):
    """The named resource does not exist (or is not the caller's)."""

    code = "not_found"
    status = 404


class ClerkUnavailable(IssuerError):
    """Clerk did not answer in time or answered with an error: fail closed (A3)."""

    code = "clerk_unavailable"
    status = 503


class DatabaseUnavailable(IssuerError):
    """Postgres could not be reached or the connection broke: retryable (F1)."""

    code = "database_unavailable"
    status = 503
