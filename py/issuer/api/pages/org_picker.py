"""The org picker: Personal, then the user's Clerk organizations with their seats.

Membership comes from Clerk; the seat, and whether it may be used, from the
database (``seat_overview``). When Clerk cannot answer only Personal is
offered, with a warning (fail closed). Choosing is still checked by the flow
that acts on the choice (``resolve_scope``): the picker only explains.
"""

from __future__ import annotations

from dataclasses import dataclass

from issuer.clerk import ClerkSession
from issuer.errors import BadRequest, ClerkUnavailable
from issuer.flows.scope import check_org_id
from issuer.service import Issuer

SEAT_REASONS = {
    "suspended": "Seat suspended",
    "pending": "Seat pending: not activated yet",
    "revoked": "Seat revoked",
}
DENIAL_TEXT = {
    "not_a_member": "you are not a member of that organization",
    "no_active_seat": "you do not hold an active seat in that organization",
    "clerk_unavailable": "your memberships could not be checked with Clerk right now",
}


def denial_text(reason: str) -> str:
    """Words for an ``OrgScopeDenied`` reason."""
    return DENIAL_TEXT.get(reason, reason)


@dataclass(frozen=True)
class OrgChoice:
    """One entry of the org picker: ``value`` is the clerk_org_id ("" = Personal)."""

    value: str
    name: str
    detail: str
    selectable: bool
    reason: str | None = None


PERSONAL = OrgChoice("", "Personal", "your own credits", True)


@dataclass(frozen=True)
class OrgPicker:
    choices: list[OrgChoice]
    warning: str | None
    names: dict[str, str]
    """Organization names by clerk_org_id, also of orgs the user has left (token list)."""

    def preselect(self, wanted: str | None) -> tuple[str, list[str]]:
        """The org to check initially, and the warnings to show (Clerk away, wanted unusable)."""
        selected, unusable = _preselect(self.choices, wanted)
        return selected, [w for w in (self.warning, unusable) if w]


def org_picker(issuer: Issuer, session: ClerkSession) -> OrgPicker:
    """Personal, then the user's Clerk organizations with their seats."""
    seats = {
        str(row.clerk_org_id): row
        for row in issuer.rpc.seat_overview(p_clerk_user_id=session.user_id)
    }
    names = {org: str(row.organization_name or org) for org, row in seats.items()}
    try:
        memberships = issuer.clerk.list_memberships(session.user_id)
    except ClerkUnavailable:
        warning = (
            "Your organizations could not be loaded from Clerk right now, so only "
            "Personal is offered. Try again in a moment to use an organization."
        )
        return OrgPicker([PERSONAL], warning, names)
    orgs: list[OrgChoice] = []
    for membership in memberships:
        seat = seats.get(membership.org_id)
        name = names.get(membership.org_id) or membership.org_name or membership.org_id
        names[membership.org_id] = name
        role = (membership.role or "").removeprefix("org:")
        detail = f"organization pool · {role}" if role else "organization pool"
        if seat is None:
            orgs.append(OrgChoice(membership.org_id, name, detail, False, "No seat"))
        elif seat.selectable is True:
            orgs.append(OrgChoice(membership.org_id, name, detail, True))
        else:
            status = str(seat.seat_status)
            reason = SEAT_REASONS.get(status, f"Seat {status}")
            orgs.append(OrgChoice(membership.org_id, name, detail, False, reason))
    orgs.sort(key=lambda c: (c.name.casefold(), c.value))
    return OrgPicker([PERSONAL, *orgs], None, names)


def _preselect(choices: list[OrgChoice], wanted: str | None) -> tuple[str, str | None]:
    """The org to check initially and, if the wanted one cannot be used, why."""
    if not wanted:
        return "", None
    for choice in choices:
        if choice.value == wanted:
            if choice.selectable:
                return wanted, None
            return "", f"{choice.name} cannot be used: {(choice.reason or '').lower()}."
    return "", "You are not a member of the requested organization; Personal is selected."


def wanted_org(raw: str | None) -> str | None:
    """A well-formed ``clerk_org_id`` from the query or form, else None (nothing preselected)."""
    try:
        return check_org_id(raw)
    except BadRequest:
        return None
