"""Org attribution = Clerk membership (here) and an active seat (Postgres).

A token carries org claims only when both hold (A1). Membership is checked
claims first (A2): if the verified Clerk session's active org is the one
requested, its claims are proof enough and Clerk's API is not called;
otherwise the Backend API lists the user's memberships. The seat, and every
attribution field, come from one RPC, ``resolve_org_attribution``: Python
never decides seat rules.

Failure is closed (A3): when Clerk cannot answer, no org claims are issued.
:func:`resolve_org_attribution_claims` says *why* a request for org scope was
not granted, because the HTTP layer answers ``org_scope_denied`` with the
reason (or 403 when the caller required org scope).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from issuer.claims import OrgAttribution
from issuer.clerk import ClerkClient, ClerkSession, Membership
from issuer.errors import BadRequest, ClerkUnavailable, OrgScopeDenied
from issuer.rpc_generated import OrgAttribution as AttributionRow
from issuer.rpc_generated import TokenSubject

log = logging.getLogger(__name__)

DeniedReason = Literal["not_a_member", "no_active_seat", "clerk_unavailable"]
NOT_A_MEMBER: DeniedReason = "not_a_member"
NO_ACTIVE_SEAT: DeniedReason = "no_active_seat"
CLERK_UNAVAILABLE: DeniedReason = "clerk_unavailable"


class AttributionRpc(Protocol):
    """The one database call attribution needs (the generated ``Rpc`` provides it).

    Answers the ``public.org_attribution`` row of ``resolve_org_attribution``,
    or ``None`` (a null row) when the org is unknown or the user holds no
    active seat in it.
    """

    def resolve_org_attribution(
        self, *, p_clerk_user_id: str, p_clerk_org_id: str
    ) -> AttributionRow | None: ...


@dataclass(frozen=True, slots=True)
class AttributionResult:
    """Either an attribution (org token) or the reason there is none (personal token)."""

    attribution: OrgAttribution | None
    denied_reason: DeniedReason | None = None
    #: ``users.email``, when the session had none and the database was asked (L9).
    email: str | None = None
    email_looked_up: bool = False

    def require(self) -> OrgAttribution:
        """The attribution, or :class:`OrgScopeDenied` when the caller insisted on org scope."""
        if self.attribution is None:
            raise OrgScopeDenied(self.denied_reason or NOT_A_MEMBER)
        return self.attribution


def resolve_org_membership(
    session: ClerkSession,
    clerk_org_id: str,
    clerk: ClerkClient,
    *,
    raise_on_unavailable: bool = False,
) -> Membership | None:
    """The session user's membership of ``clerk_org_id``, or ``None``.

    Claims first: when the session's active org is ``clerk_org_id`` no API
    call is made. Otherwise memberships are read from the Backend API, page
    by page until the org is found or the list ends.

    When Clerk is unavailable the default is to log and return ``None`` (fail
    closed: no membership, no org claims). ``raise_on_unavailable=True``
    re-raises :class:`ClerkUnavailable` instead, for callers that must tell
    "not a member" from "could not ask".
    """
    if not clerk_org_id:
        raise BadRequest("clerk_org_id must be non-empty")
    if session.active_org_id == clerk_org_id:
        return Membership(org_id=clerk_org_id, role=session.active_org_role)
    try:
        for membership in clerk.iter_memberships(session.user_id):
            if membership.org_id == clerk_org_id:
                return membership
    except ClerkUnavailable:
        if raise_on_unavailable:
            raise
        log.warning(
            "membership of %s in %s unknown: Clerk unavailable, failing closed",
            session.user_id,
            clerk_org_id,
        )
    return None


def resolve_org_attribution_claims(
    session: ClerkSession,
    clerk_org_id: str,
    *,
    clerk: ClerkClient,
    rpc: AttributionRpc,
) -> AttributionResult:
    """Membership (Clerk), then seat and attribution (one RPC), then ``org_role``.

    The RPC is called only for members, so a non-member costs no database
    round trip and a member costs exactly one. Database errors propagate
    (``DatabaseUnavailable`` → 503): a broken database is not a reason to
    hand out a personal token silently.
    """
    try:
        membership = resolve_org_membership(session, clerk_org_id, clerk, raise_on_unavailable=True)
    except ClerkUnavailable:
        log.warning(
            "org scope %s for %s denied: Clerk unavailable, failing closed",
            clerk_org_id,
            session.user_id,
        )
        return AttributionResult(None, CLERK_UNAVAILABLE)
    if membership is None:
        return AttributionResult(None, NOT_A_MEMBER)

    email: str | None = None
    looked_up = False
    row: AttributionRow | None
    # The generated Rpc has resolve_token_subject; a stand-in may not.
    lookup = getattr(rpc, "resolve_token_subject", None)
    if session.email is None and lookup is not None:
        # L9: the session has no email; the same round trip brings users.email.
        subject: TokenSubject = lookup(p_clerk_user_id=session.user_id, p_clerk_org_id=clerk_org_id)
        row, email, looked_up = subject.attribution, subject.email, True
    else:
        row = rpc.resolve_org_attribution(
            p_clerk_user_id=session.user_id, p_clerk_org_id=clerk_org_id
        )
    if row is None:
        return AttributionResult(None, NO_ACTIVE_SEAT, email, looked_up)
    attribution = OrgAttribution.from_rpc(row, org_role=membership.role)
    if attribution.clerk_org_id != clerk_org_id:
        raise ValueError("resolve_org_attribution answered for another organization")
    return AttributionResult(attribution, None, email, looked_up)
