"""Which pool a new token names: the org's (seat-gated) or the user's own.

The rule (A1): org claims only with Clerk membership AND an active seat. The
database decides the seat (``resolve_org_attribution``); Clerk decides the
membership (claims first, then its API). If either fails the token is
personal and :attr:`Scope.denied_reason` says why, or, when the caller set
``require_org``, :class:`~issuer.errors.OrgScopeDenied` is raised (403).
A *refresh* keeps the scope the session was created with (:func:`keep_scope`):
a lost org scope is :class:`~issuer.errors.OrgScopeLost`, never a personal
token (L2).
"""

from __future__ import annotations

from dataclasses import dataclass

from issuer.attribution import resolve_org_attribution_claims
from issuer.claims import OrgAttribution
from issuer.clerk import ClerkSession
from issuer.errors import BadRequest, OrgScopeDenied, OrgScopeLost
from issuer.service import Issuer

MAX_ORG_ID_LENGTH = 200


@dataclass(frozen=True)
class Scope:
    attribution: OrgAttribution | None
    requested_org: str | None = None
    denied_reason: str | None = None
    #: ``users.email`` when the attribution round trip fetched it (L9).
    email: str | None = None
    email_looked_up: bool = False

    @property
    def clerk_org_id(self) -> str | None:
        return self.attribution.clerk_org_id if self.attribution else None

    def denial(self) -> dict[str, str] | None:
        """The ``org_scope_denied`` object the API returns beside a personal token."""
        if self.requested_org and self.attribution is None:
            return {
                "clerk_org_id": self.requested_org,
                "reason": self.denied_reason or "not_a_member",
            }
        return None


def check_org_id(clerk_org_id: str | None) -> str | None:
    if clerk_org_id is None or clerk_org_id == "":
        return None
    if len(clerk_org_id) > MAX_ORG_ID_LENGTH or not clerk_org_id.isprintable():
        raise BadRequest("clerk_org_id is not a valid organization id")
    return clerk_org_id


def session_for_user(clerk_user_id: str) -> ClerkSession:
    """A stand-in session for flows without a Clerk token (refresh grants):
    it names no active org, so membership is always asked of Clerk's API."""
    return ClerkSession(
        user_id=clerk_user_id,
        session_id="",
        email=None,
        active_org_id=None,
        active_org_role=None,
        version=0,
    )


def keep_scope(issuer: Issuer, session: ClerkSession, clerk_org_id: str | None) -> Scope:
    """The scope of a *refresh*: the org the session was created with, or nothing (L2).

    A personal session stays personal. An org-scoped session stays in its
    org: when the seat or membership is gone, :class:`OrgScopeLost` is raised
    and nothing is issued; the payer never changes without the user choosing.
    """
    if not clerk_org_id:
        return Scope(None)
    result = resolve_org_attribution_claims(
        session, clerk_org_id, clerk=issuer.clerk, rpc=issuer.rpc
    )
    if result.attribution is None:
        raise OrgScopeLost(clerk_org_id, result.denied_reason or "not_a_member")
    return Scope(result.attribution, clerk_org_id, None, result.email, result.email_looked_up)


def resolve_scope(
    issuer: Issuer,
    session: ClerkSession,
    clerk_org_id: str | None,
    *,
    require_org: bool = False,
) -> Scope:
    org = check_org_id(clerk_org_id)
    if org is None:
        if require_org:
            raise BadRequest("require_org needs clerk_org_id")
        return Scope(None)
    result = resolve_org_attribution_claims(session, org, clerk=issuer.clerk, rpc=issuer.rpc)
    if result.attribution is None and require_org:
        raise OrgScopeDenied(result.denied_reason or "not_a_member")
    return Scope(
        result.attribution, org, result.denied_reason, result.email, result.email_looked_up
    )


def token_email(issuer: Issuer, session: ClerkSession, scope: Scope) -> str | None:
    """The ``email`` claim (L9): the session's, else ``users.email``; null only when both lack it.

    The lookup rides on the attribution round trip when there was one; a
    personal token from a session without email costs one small call.
    """
    if session.email is not None:
        return session.email
    if scope.email_looked_up:
        return scope.email
    return issuer.rpc.resolve_token_subject(p_clerk_user_id=session.user_id).email
