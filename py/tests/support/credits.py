"""Arrange and act helpers for the credit tests, on a plain psycopg connection.

Rows are created the way a backend creates them: as ``service_role``, through
its column grants (users, organizations, seats, subscriptions) and the credit
RPCs (every balance). So a test arranged with these helpers also exercises
the grants, and the ledger always matches the balances.

    conn = connect_service_role(db_url)
    create_user(conn, "user_alice", personal_credits=50)
    create_org(conn, "org_acme", name="Acme", stripe_customer_id="cus_acme")
    create_subscription(conn, "org_acme", status="active", pool_credits=100)
    create_seat(conn, "org_acme", "user_alice", role="member", status="active")
    result = deduct(conn, "user_alice", 5, "chat", clerk_org_id="org_acme")
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Amount = Decimal | int | str


@dataclass(frozen=True)
class CreditResult:
    """``public.credit_result``."""

    ok: bool
    pool: str | None
    reason: str | None
    transaction_id: uuid.UUID | None
    amount: Decimal | None
    balance: Decimal | None
    replayed: bool


def connect_service_role(db_url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection acting as ``service_role`` from its first statement."""
    return psycopg.connect(db_url, autocommit=autocommit, options="-c role=service_role")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# -- arrange -------------------------------------------------------------------


def create_user(
    conn: psycopg.Connection[Any],
    clerk_user_id: str,
    *,
    personal_credits: Amount = 0,
    email: str | None = None,
) -> uuid.UUID:
    row = conn.execute(
        "insert into public.users (clerk_user_id, email) values (%s, %s) returning id",
        (clerk_user_id, email or f"{clerk_user_id}@example.test"),
    ).fetchone()
    assert row is not None
    if Decimal(personal_credits) > 0:
        result = grant(
            conn, personal_credits, "test: personal credits", clerk_user_id=clerk_user_id
        )
        assert result.ok, result
    return uuid.UUID(str(row[0]))


def create_org(
    conn: psycopg.Connection[Any],
    clerk_org_id: str,
    *,
    name: str | None = None,
    stripe_customer_id: str | None = None,
) -> uuid.UUID:
    row = conn.execute(
        "insert into public.organizations (clerk_org_id, name, stripe_customer_id) "
        "values (%s, %s, %s) returning id",
        (clerk_org_id, name or clerk_org_id, stripe_customer_id),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def create_subscription(
    conn: psycopg.Connection[Any],
    clerk_org_id: str,
    *,
    status: str = "active",
    pool_credits: Amount = 0,
    stripe_subscription_id: str | None = None,
    period_start: str = "2026-01-01T00:00:00Z",
    period_end: str = "2026-02-01T00:00:00Z",
) -> uuid.UUID:
    """The org's new current subscription (an older current one is cleared first)."""
    conn.execute(
        "update public.organization_subscriptions as s set is_current = false "
        "from public.organizations as o "
        "where s.organization_id = o.id and o.clerk_org_id = %s and s.is_current",
        (clerk_org_id,),
    )
    row = conn.execute(
        "insert into public.organization_subscriptions "
        "(organization_id, stripe_subscription_id, status, current_period_start, current_period_end) "
        "select id, %s, 'active', %s, %s from public.organizations where clerk_org_id = %s "
        "returning id",
        (stripe_subscription_id or unique("sub"), period_start, period_end, clerk_org_id),
    ).fetchone()
    assert row is not None, f"unknown org {clerk_org_id}"
    if Decimal(pool_credits) > 0:
        result = grant(conn, pool_credits, "test: pool credits", clerk_org_id=clerk_org_id)
        assert result.ok, result
    if status != "active":
        conn.execute(
            "update public.organization_subscriptions set status = %s where id = %s",
            (status, row[0]),
        )
    return uuid.UUID(str(row[0]))


def create_seat(
    conn: psycopg.Connection[Any],
    clerk_org_id: str,
    clerk_user_id: str,
    *,
    role: str = "member",
    status: str = "active",
) -> uuid.UUID:
    """A seat; the user is created (without credits) if they do not exist yet."""
    exists = conn.execute(
        "select 1 from public.users where clerk_user_id = %s", (clerk_user_id,)
    ).fetchone()
    if exists is None:
        create_user(conn, clerk_user_id)
    row = conn.execute(
        "insert into public.organization_seats (organization_id, user_id, role, status) "
        "select o.id, u.id, %s, %s from public.organizations as o, public.users as u "
        "where o.clerk_org_id = %s and u.clerk_user_id = %s returning id",
        (role, status, clerk_org_id, clerk_user_id),
    ).fetchone()
    assert row is not None, f"unknown org {clerk_org_id}"
    return uuid.UUID(str(row[0]))


def set_seat_status(
    conn: psycopg.Connection[Any], clerk_org_id: str, clerk_user_id: str, status: str
) -> None:
    conn.execute("select public.set_seat_status(%s, %s, %s)", (clerk_org_id, clerk_user_id, status))


# -- act -----------------------------------------------------------------------

_RESULT_COLUMNS = "ok, pool, reason, transaction_id, amount, balance, replayed"


def _result(row: tuple[Any, ...] | None) -> CreditResult:
    assert row is not None
    return CreditResult(*row)


def deduct(
    conn: psycopg.Connection[Any],
    clerk_user_id: str,
    amount: Amount,
    description: str = "test deduction",
    *,
    clerk_org_id: str | None = None,
    idempotency_key: str | None = None,
    context: dict[str, Any] | None = None,
) -> CreditResult:
    return _result(
        conn.execute(
            f"select {_RESULT_COLUMNS} from public.deduct_credits_pooled("
            "p_clerk_user_id => %s, p_amount => %s, p_description => %s, p_clerk_org_id => %s, "
            "p_idempotency_key => %s, p_context => %s)",
            (
                clerk_user_id,
                Decimal(amount),
                description,
                clerk_org_id,
                idempotency_key,
                Jsonb(context or {}),
            ),
        ).fetchone()
    )


def grant(
    conn: psycopg.Connection[Any],
    amount: Amount,
    description: str = "test grant",
    *,
    clerk_user_id: str | None = None,
    clerk_org_id: str | None = None,
    idempotency_key: str | None = None,
    context: dict[str, Any] | None = None,
) -> CreditResult:
    return _result(
        conn.execute(
            f"select {_RESULT_COLUMNS} from public.grant_credits("
            "p_amount => %s, p_description => %s, p_clerk_user_id => %s, p_clerk_org_id => %s, "
            "p_idempotency_key => %s, p_context => %s)",
            (
                Decimal(amount),
                description,
                clerk_user_id,
                clerk_org_id,
                idempotency_key,
                Jsonb(context or {}),
            ),
        ).fetchone()
    )


def refund(
    conn: psycopg.Connection[Any],
    transaction_id: uuid.UUID,
    amount: Amount | None = None,
    description: str | None = None,
    *,
    idempotency_key: str | None = None,
    context: dict[str, Any] | None = None,
) -> CreditResult:
    return _result(
        conn.execute(
            f"select {_RESULT_COLUMNS} from public.refund_credits("
            "p_transaction_id => %s, p_amount => %s, p_description => %s, "
            "p_idempotency_key => %s, p_context => %s)",
            (
                transaction_id,
                None if amount is None else Decimal(amount),
                description,
                idempotency_key,
                Jsonb(context or {}),
            ),
        ).fetchone()
    )


# -- observe -------------------------------------------------------------------


def personal_balance(conn: psycopg.Connection[Any], clerk_user_id: str) -> Decimal:
    row = conn.execute(
        "select credits_balance from public.users where clerk_user_id = %s", (clerk_user_id,)
    ).fetchone()
    assert row is not None, f"unknown user {clerk_user_id}"
    return Decimal(row[0])


def pool_balance(conn: psycopg.Connection[Any], clerk_org_id: str) -> Decimal:
    """The balance of the org's current subscription pool."""
    row = conn.execute(
        "select s.credits_balance from public.organization_subscriptions as s "
        "join public.organizations as o on s.organization_id = o.id "
        "where o.clerk_org_id = %s and s.is_current",
        (clerk_org_id,),
    ).fetchone()
    assert row is not None, f"no current subscription for {clerk_org_id}"
    return Decimal(row[0])


def consistency_problems(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``credit_consistency_check()``: empty when every pool matches its ledger."""
    return conn.execute("select * from public.credit_consistency_check()").fetchall()


def ledger_sum(
    conn: psycopg.Connection[Any],
    *,
    clerk_user_id: str | None = None,
    clerk_org_id: str | None = None,
) -> Decimal:
    """Sum of a pool's ledger rows: a user's personal pool or an org's current pool."""
    if clerk_org_id is not None:
        row = conn.execute(
            "select coalesce(sum(t.amount), 0) from public.credit_transactions as t "
            "join public.organization_subscriptions as s on t.organization_subscription_id = s.id "
            "join public.organizations as o on s.organization_id = o.id "
            "where o.clerk_org_id = %s and s.is_current",
            (clerk_org_id,),
        ).fetchone()
    else:
        row = conn.execute(
            "select coalesce(sum(t.amount), 0) from public.credit_transactions as t "
            "join public.users as u on t.user_id = u.id "
            "where t.pool = 'personal' and u.clerk_user_id = %s",
            (clerk_user_id,),
        ).fetchone()
    assert row is not None
    return Decimal(row[0])
