"""Who is in the story, and how their rows are created.

Rows are created the way a deployer's backend creates them: as
``service_role``, through the column grants of ``users``, ``organizations``,
``organization_seats`` and ``organization_subscriptions`` (balances are not
among the granted columns), and credits only through ``grant_credits``.
Clerk's side (users, the organization, memberships) goes into the fake Clerk.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from issuer_dev.demo.environment import Environment


@dataclass(frozen=True)
class Org:
    clerk_org_id: str
    name: str
    stripe_customer_id: str
    stripe_subscription_id: str
    pool: Decimal


@dataclass(frozen=True)
class Person:
    name: str
    clerk_user_id: str
    email: str
    personal: Decimal
    seat_role: str | None = None
    """Role of the seat in Acme (None: no seat, not a member)."""
    seat_status: str | None = None

    @property
    def clerk_role(self) -> str:
        return "org:admin" if self.seat_role in {"owner", "admin"} else "org:member"


ACME = Org(
    clerk_org_id="org_2acme",
    name="Acme Inc",
    stripe_customer_id="cus_acme",
    stripe_subscription_id="sub_acme",
    pool=Decimal(100),
)

ALICE = Person("Alice", "user_2alice", "alice@acme.example", Decimal(0), "owner", "active")
BOB = Person("Bob", "user_2bob", "bob@acme.example", Decimal(25), "member", "active")
CAROL = Person("Carol", "user_2carol", "carol@acme.example", Decimal(10), "member", "suspended")
DAVE = Person("Dave", "user_2dave", "dave@example.com", Decimal(50))

PEOPLE = (ALICE, BOB, CAROL, DAVE)


def create_cast(env: Environment) -> None:
    """Acme Inc with an active subscription and a pool; four people, three seats."""
    env.clerk.add_organization(ACME.clerk_org_id, ACME.name)
    with env.service_role() as conn, conn.transaction():
        for person in PEOPLE:
            env.clerk.add_user(person.clerk_user_id, email=person.email)
            conn.execute(
                "insert into public.users (clerk_user_id, email) values (%s, %s)",
                (person.clerk_user_id, person.email),
            )
        conn.execute(
            "insert into public.organizations (clerk_org_id, name, stripe_customer_id) "
            "values (%s, %s, %s)",
            (ACME.clerk_org_id, ACME.name, ACME.stripe_customer_id),
        )
        conn.execute(
            "insert into public.organization_subscriptions "
            "(organization_id, stripe_subscription_id, status, is_current, "
            " current_period_start, current_period_end) "
            "select o.id, %s, 'active', true, date_trunc('month', now()), "
            "       date_trunc('month', now()) + interval '1 month' "
            "from public.organizations as o where o.clerk_org_id = %s",
            (ACME.stripe_subscription_id, ACME.clerk_org_id),
        )
        for person in PEOPLE:
            if person.seat_role is None:
                continue
            env.clerk.add_membership(
                person.clerk_user_id, ACME.clerk_org_id, role=person.clerk_role
            )
            conn.execute(
                "insert into public.organization_seats (organization_id, user_id, role, status) "
                "select o.id, u.id, %s, %s from public.organizations as o, public.users as u "
                "where o.clerk_org_id = %s and u.clerk_user_id = %s",
                (person.seat_role, person.seat_status, ACME.clerk_org_id, person.clerk_user_id),
            )
    env.rpc.grant_credits(
        p_amount=ACME.pool,
        p_description="Acme Inc monthly plan",
        p_clerk_org_id=ACME.clerk_org_id,
        p_idempotency_key="stripe:in_acme_0001",
    )
    for person in PEOPLE:
        if person.personal:
            env.rpc.grant_credits(
                p_amount=person.personal,
                p_description="personal top-up",
                p_clerk_user_id=person.clerk_user_id,
            )
