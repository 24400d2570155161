"""docs/analytics.md runs: every ```sql block is executed against a ledger with data.

Each block starts with ``-- name: <id>``; ``EXPECTED`` below says what its
rows must be on the data :func:`ledger` arranges (Acme with two seats and a
refund, Globex nearly empty, one personal spender). A block without a name,
or a name without an expectation, fails the suite: no query is added to the
cookbook unrun. The blocks of docs/database.md are run the same way. The
ledger uses the demo's ids where the page names them (``org_2acme``,
``user_2alice``); test_analytics_on_demo.py runs the page on the demo itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from issuer_dev.migrations import repo_root
from support import credits

DOCS = repo_root() / "docs"
BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)
NAME = re.compile(r"^-- name: (\w+)", re.M)

Rows = list[tuple[Any, ...]]


def sql_blocks(path: Path) -> list[tuple[str, str]]:
    blocks = []
    for body in BLOCK.findall(path.read_text(encoding="utf-8")):
        m = NAME.search(body)
        assert m, f"{path.name}: a sql block without '-- name: ...':\n{body}"
        blocks.append((m.group(1), body))
    return blocks


ANALYTICS = sql_blocks(DOCS / "analytics.md")
DATABASE = sql_blocks(DOCS / "database.md") if (DOCS / "database.md").exists() else []
D = Decimal


def rows_are(expected: Rows, *cols: int) -> Callable[[Rows], None]:
    """The query returns exactly ``expected`` (only the columns ``cols`` when given)."""

    def check(rows: Rows) -> None:
        got = [tuple(r[i] for i in cols) for r in rows] if cols else rows
        assert got == expected

    return check


def richest_first(rows: Rows) -> None:
    assert rows[0] == ("user_dave", D(33))
    assert all(r[1] == 0 for r in rows[1:])


EXPECTED: dict[str, Callable[[Rows], None]] = {
    # usage_date, deductions, credits_used, credits_refunded, net_credits_used, active_seats
    "org_usage_by_day": rows_are([(3, D(36), D(5), D(31), 2)], 1, 2, 3, 4, 5),
    "org_usage_by_day_from_ledger": rows_are([(3, D(36))], 1, 2),
    "all_orgs_last_7_days": rows_are([("Globex", D(45)), ("Acme", D(31)), ("Initech", D(2))], 1, 2),
    "seats_of_an_org": rows_are(
        [("user_2alice", "member", 2, D(16)), ("user_bob", "admin", 1, D(15))], 0, 1, 3, 4
    ),
    "seats_this_period": rows_are([("user_2alice", "member", D(16)), ("user_bob", "admin", D(15))]),
    "seats_against_their_cap": rows_are(
        [("user_bob", None, None, D(20), None), ("user_2alice", None, None, D(16), None)]
    ),
    "seats_near_their_cap": rows_are([]),
    "recent_low_balance_alerts": rows_are([]),
    "by_stripe_customer": rows_are([("cus_acme", "Acme", D(31))], 0, 1, 3),
    "by_stripe_customer_from_metadata": rows_are([("cus_acme", 3, D(31))]),
    "subscription_periods": rows_are([("sub_acme", D(500), D(36), D(5), D(31))], 0, 3, 4, 5, 6),
    "usage_by_model": rows_are([("gpt-4o", 2, D(30), 4000), ("claude", 1, D(6), 500)]),
    "one_user_activity": rows_are([("organization", "deduction", "org_2acme")] * 2, 1, 2, 5),
    "refunds_with_originals": rows_are([(D(5), D(20), "agent run", "org_2acme")], 1, 2, 3, 4),
    "org_pools_running_low": rows_are([("org_globex", "Globex", "active", D(5))]),
    "largest_personal_balances": richest_first,
    "consistency": rows_are([]),
    "live_holds": rows_are([("org_2acme", 1, D(8))]),
    "holds_captured_for_less": rows_are([("org_initech", D(10), D(2), D(8), "stream")]),
}


@pytest.fixture(scope="module")
def ledger(db_url: str) -> Iterator[str]:
    with credits.connect_service_role(db_url) as c:
        credits.create_org(c, "org_2acme", name="Acme", stripe_customer_id="cus_acme")
        credits.create_subscription(
            c, "org_2acme", pool_credits=500, stripe_subscription_id="sub_acme"
        )
        credits.create_seat(c, "org_2acme", "user_2alice", role="member")
        credits.create_seat(c, "org_2acme", "user_bob", role="admin")
        credits.create_org(c, "org_globex", name="Globex", stripe_customer_id="cus_globex")
        credits.create_subscription(
            c, "org_globex", pool_credits=50, stripe_subscription_id="sub_globex"
        )
        credits.create_seat(c, "org_globex", "user_carol")
        credits.create_user(c, "user_dave", personal_credits=40)

        def spend(
            user: str, amount: int, org: str | None, what: str, **context: Any
        ) -> credits.CreditResult:
            r = credits.deduct(c, user, amount, what, clerk_org_id=org, context=context)
            assert r.ok, r
            return r

        spend("user_2alice", 10, "org_2acme", "chat", model="gpt-4o", tokens=1000)
        spend("user_2alice", 6, "org_2acme", "chat", model="claude", tokens=500)
        agent = spend("user_bob", 20, "org_2acme", "agent run", model="gpt-4o", tokens=3000)
        spend("user_carol", 45, "org_globex", "batch", model="gpt-4o", tokens=9000)
        spend("user_dave", 7, None, "personal chat", model="claude", tokens=700)
        assert agent.transaction_id is not None
        assert credits.refund(c, agent.transaction_id, 5, "partly failed").ok

        # Holds (H1): one live on Acme, one captured for less on Initech.
        credits.create_org(c, "org_initech", name="Initech", stripe_customer_id="cus_initech")
        credits.create_subscription(c, "org_initech", pool_credits=1000)
        credits.create_seat(c, "org_initech", "user_erin")
        c.execute("select public.authorize_credits('user_2alice', 8, 'stream', 'org_2acme')")
        hold = c.execute(
            "select hold_id from public.authorize_credits('user_erin', 10, 'stream', 'org_initech')"
        ).fetchone()
        assert hold is not None
        c.execute("select public.capture_credits(%s, 'user_erin', 2)", (hold[0],))
    yield db_url


def test_every_cookbook_query_has_an_expectation() -> None:
    names = [name for name, _ in ANALYTICS + DATABASE]
    assert len(names) == len(set(names)), "two blocks share a name"
    assert set(names) == set(EXPECTED), (
        f"blocks without expectations: {set(names) - set(EXPECTED)}; "
        f"expectations without blocks: {set(EXPECTED) - set(names)}"
    )
    assert len(ANALYTICS) >= 10


@pytest.mark.parametrize(
    ("name", "query"), ANALYTICS + DATABASE, ids=[n for n, _ in ANALYTICS + DATABASE]
)
def test_cookbook_query(name: str, query: str, ledger: str) -> None:
    # As analysts run them: as the service role.
    with psycopg.connect(ledger, options="-c role=service_role") as conn:
        rows = conn.execute(query).fetchall()
    EXPECTED[name](rows)
