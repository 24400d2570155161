"""H2 (per-seat caps) and H3 (low-balance alerts) under real concurrency, over HTTP and on the page.

The concurrency tests start 64 clients together (a barrier), each a thread
with its own psycopg connection acting as ``service_role`` and calling
``deduct_credits_pooled`` (autocommit, as the issuer does):

* one capped seat: exactly ``cap / amount`` deductions succeed, the rest are
  refused with ``seat_cap_reached``; the seat's counter and its ledger rows
  both equal the cap, never more;
* one pool with thresholds: exactly one alert per threshold crossed, each
  written by the deduction whose before/after spans it.

    .venv/bin/pytest -q -s py/tests/test_seat_caps.py
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import psycopg
import pytest

from issuer.api.pages import caps as caps_page
from issuer.api.pages import csrf_token
from issuer.clerk import ClerkSession
from issuer.flows.usage import SEAT_CAP_MESSAGE
from issuer_dev.fake_clerk import FakeClerk
from support import credits
from support.credits import CreditResult
from support.world import World, make_world

CLIENTS = 64


def _parallel(
    db_url: str, clients: int, work: Callable[[psycopg.Connection[Any], int], CreditResult]
) -> list[CreditResult]:
    """``work`` in ``clients`` threads, each with its own connection, started together."""
    connections = [credits.connect_service_role(db_url) for _ in range(clients)]
    barrier = threading.Barrier(clients)
    results: list[CreditResult | None] = [None] * clients
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(connections[i], i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conn in connections:
        conn.close()
    assert not errors, errors[:3]
    return [r for r in results if r is not None]


def test_H2_64_clients_on_one_capped_seat_never_pass_the_cap(
    new_db: Callable[[], str],
) -> None:
    url = new_db()
    with credits.connect_service_role(url) as conn:
        credits.create_org(conn, "org_cap")
        credits.create_subscription(conn, "org_cap", pool_credits=10_000)
        seat = credits.create_seat(conn, "org_cap", "user_capped")
        credits.create_seat(conn, "org_cap", "user_free")
        row = conn.execute("select (public.set_seat_cap(%s, 10.5, 'day')).ok", (seat,)).fetchone()
        assert row == (True,)

    # 64 clients x 0.75 = 48 asked; the cap of 10.5 lets exactly 14 through.
    results = _parallel(
        url,
        CLIENTS,
        lambda c, i: credits.deduct(c, "user_capped", "0.75", f"c{i}", clerk_org_id="org_cap"),
    )
    reasons = Counter(r.reason for r in results)
    assert reasons == {None: 14, "seat_cap_reached": CLIENTS - 14}, reasons

    with credits.connect_service_role(url) as conn:
        spent = conn.execute(
            "select spent from public.seat_cap_spend where seat_id = %s", (seat,)
        ).fetchone()
        ledger = conn.execute(
            "select coalesce(sum(-amount), 0) from public.credit_transactions where seat_id = %s",
            (seat,),
        ).fetchone()
        assert spent == (Decimal("10.5"),)
        assert ledger == (Decimal("10.5"),)
        assert credits.pool_balance(conn, "org_cap") == Decimal("9989.5")
        # Another seat of the same pool still spends: the pool is not short.
        assert credits.deduct(conn, "user_free", 100, "free", clerk_org_id="org_cap").ok
        assert credits.consistency_problems(conn) == []


def test_H2_a_batch_and_single_deductions_of_one_capped_seat_share_the_cap(
    new_db: Callable[[], str],
) -> None:
    """Batches lock the seat's counter before the pool row, like single deductions: no deadlock."""
    url = new_db()
    with credits.connect_service_role(url) as conn:
        credits.create_org(conn, "org_mix")
        credits.create_subscription(conn, "org_mix", pool_credits=10_000)
        seat = credits.create_seat(conn, "org_mix", "user_mix")
        conn.execute("select public.set_seat_cap(%s, 20, 'month')", (seat,))

    def work(c: psycopg.Connection[Any], i: int) -> CreditResult:
        if i % 2:
            return credits.deduct(c, "user_mix", 1, f"s{i}", clerk_org_id="org_mix")
        row = c.execute(
            "select ok, pool, reason, transaction_id, amount, balance, replayed "
            "from public.deduct_credits_pooled_batch('org_mix', %s::jsonb)",
            ('[{"clerk_user_id": "user_mix", "amount": 1, "description": "b"}]',),
        ).fetchone()
        return (
            CreditResult(*row)
            if row
            else CreditResult(False, None, "none", None, None, None, False)
        )

    results = _parallel(url, CLIENTS, work)
    assert sum(r.ok for r in results) == 20
    assert {r.reason for r in results if not r.ok} == {"seat_cap_reached"}
    with credits.connect_service_role(url) as conn:
        assert credits.pool_balance(conn, "org_mix") == Decimal(9980)
        assert credits.consistency_problems(conn) == []


def test_H3_64_clients_on_one_pool_write_one_alert_per_crossing(
    new_db: Callable[[], str],
) -> None:
    url = new_db()
    with credits.connect_service_role(url) as conn:
        org_id = credits.create_org(conn, "org_alerts")
        credits.create_subscription(conn, "org_alerts", pool_credits=100)
        for i in range(8):
            credits.create_seat(conn, "org_alerts", f"user_a{i}")
        # 50 and 20 absolute, 10% of the last grant (100) = 10.
        conn.execute(
            "select public.set_low_balance_thresholds(%s, array[50, 20]::numeric[], "
            "array[10]::numeric[])",
            (org_id,),
        )

    # 64 x 1.5 = 96 of 100: the balance falls through 50, 20 and 10.
    results = _parallel(
        url,
        CLIENTS,
        lambda c, i: credits.deduct(c, f"user_a{i % 8}", "1.5", f"d{i}", clerk_org_id="org_alerts"),
    )
    assert all(r.ok for r in results)
    with credits.connect_service_role(url) as conn:
        alerts = conn.execute(
            "select threshold, balance_before, balance_after from public.low_balance_alerts "
            "order by threshold desc"
        ).fetchall()
        assert [a[0] for a in alerts] == [Decimal(50), Decimal(20), Decimal(10)]
        for threshold, before, after in alerts:
            assert before >= threshold > after
            assert before - after == Decimal("1.5")
        # Further debits below 10 write nothing more; a grant re-arms.
        assert credits.deduct(conn, "user_a0", 1, "more", clerk_org_id="org_alerts").ok
        assert credits.grant(conn, 100, "top up", clerk_org_id="org_alerts").ok
        assert credits.deduct(conn, "user_a0", 90, "again", clerk_org_id="org_alerts").ok
        count = conn.execute("select count(*) from public.low_balance_alerts").fetchone()
        # 3 + the grant of 100 re-arms 50, 20, 10: 103 -> 13 crosses 50 and 20 again.
        assert count == (5,)
        assert credits.consistency_problems(conn) == []


# -- HTTP and the page -------------------------------------------------------------


@pytest.fixture(scope="module")
def world(db_url: str, fake_clerk: FakeClerk) -> Iterator[World]:
    w = make_world(db_url, fake_clerk, CLERK_SIGN_IN_URL="https://accounts.example.test/sign-in")
    try:
        yield w
    finally:
        w.close()
        w.issuer.close()


def _seat_id(world: World, clerk_org_id: str, clerk_user_id: str) -> str:
    return str(
        world.sql(
            "select s.id from public.organization_seats s join public.organizations o "
            "on o.id = s.organization_id join public.users u on u.id = s.user_id "
            "where o.clerk_org_id = %s and u.clerk_user_id = %s",
            (clerk_org_id, clerk_user_id),
        )[0][0]
    )


def test_H2_usage_past_the_cap_is_403_seat_cap_reached_and_the_pool_is_not_short(
    world: World,
) -> None:
    org = world.org(pool=100)
    bob, alice = world.user(), world.user()
    world.seat(org, bob)
    world.seat(org, alice)
    world.issuer.rpc.call(
        "set_seat_cap", p_seat_id=_seat_id(world, org, bob), p_cap=Decimal(2), p_period="day"
    )
    bob_token, alice_token = world.extension_token(bob, org), world.extension_token(alice, org)

    def usage(token: str, amount: float) -> Any:
        return world.client.post(
            "/api/extension/usage",
            json={"amount": amount, "description": "completion"},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert usage(bob_token, 2).status_code == 200
    refused = usage(bob_token, 1)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "seat_cap_reached",
        "pool": "organization",
        "error_description": SEAT_CAP_MESSAGE,
    }
    assert usage(alice_token, 10).status_code == 200
    assert world.pool_balance(org) == Decimal(88)


def test_H1_H2_authorize_past_the_cap_is_the_same_403_as_usage(world: World) -> None:
    """A hold on a capped seat: the hold route answers seat_cap_reached as /usage does."""
    org = world.org(pool=100)
    bob = world.user()
    world.seat(org, bob)
    world.issuer.rpc.set_seat_cap(
        p_seat_id=_seat_id(world, org, bob), p_cap=Decimal(5), p_period="month"
    )
    token = world.extension_token(bob, org)
    headers = {"Authorization": f"Bearer {token}"}
    held = world.client.post(
        "/api/extension/usage/authorize",
        json={"amount": 4, "description": "stream"},
        headers=headers,
    )
    assert held.status_code == 200, held.text
    refused = world.client.post(
        "/api/extension/usage/authorize",
        json={"amount": 2, "description": "stream"},
        headers=headers,
    )
    assert (refused.status_code, refused.json()) == (
        403,
        {
            "error": "seat_cap_reached",
            "pool": "organization",
            "error_description": SEAT_CAP_MESSAGE,
        },
    )
    void = world.client.post(
        "/api/extension/usage/void", json={"hold_id": held.json()["hold_id"]}, headers=headers
    )
    assert void.status_code == 200, void.text
    again = world.client.post(
        "/api/extension/usage/authorize",
        json={"amount": 5, "description": "stream"},
        headers=headers,
    )
    assert again.status_code == 200, again.text  # the void gave the 4 back to the cap
    assert world.consistency_problems() == []


class _Forms(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.inputs: list[dict[str, str]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            self.inputs.append({k: v or "" for k, v in attrs})

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def csrf(self) -> str:
        return next(i["value"] for i in self.inputs if i.get("name") == "csrf_token")


def test_H2_seat_caps_overview_is_one_row_per_seat_grouped_by_org_on_the_page(
    world: World,
) -> None:
    """``seat_caps_overview`` returns a table (issue 19): rows ordered by org name, then
    email, the org's columns on every seat; the page groups them back into orgs."""
    zed, able = world.org(pool=10, name="Zed Org"), world.org(pool=10, name="Able Org")
    admin = world.user(email="admin@two.test")
    bea, al = world.user(email="bea@two.test"), world.user(email="al@two.test")
    world.seat(zed, admin, role="owner")
    world.seat(able, admin, role="admin")
    world.seat(zed, bea)
    world.seat(able, bea)
    world.seat(able, al, status="suspended")
    other = world.org(pool=10, name="Aaa Not Mine")
    world.seat(other, al, role="admin")

    rows = world.issuer.rpc.seat_caps_overview(p_clerk_user_id=admin)
    assert [(r.organization_name, r.email, r.seat_status) for r in rows] == [
        ("Able Org", "admin@two.test", "active"),
        ("Able Org", "al@two.test", "suspended"),
        ("Able Org", "bea@two.test", "active"),
        ("Zed Org", "admin@two.test", "active"),
        ("Zed Org", "bea@two.test", "active"),
    ]
    assert {r.clerk_org_id for r in rows[:3]} == {able}
    assert all(r.seat_id is not None and r.remaining is None for r in rows)  # no caps yet
    assert world.issuer.rpc.seat_caps_overview(p_clerk_user_id=bea) == []

    grouped = caps_page._orgs(rows)
    assert [(o["name"], [s["who"] for s in o["seats"]]) for o in grouped] == [
        ("Able Org", ["admin@two.test", "al@two.test", "bea@two.test"]),
        ("Zed Org", ["admin@two.test", "bea@two.test"]),
    ]
    assert grouped[0]["organization_id"] == str(rows[0].organization_id)


def test_H2_caps_page_shows_spend_against_cap_and_admins_set_caps(world: World) -> None:
    org = world.org(pool=100, name="Capped Co")
    admin, member = world.user(email="admin@capped.test"), world.user(email="bob@capped.test")
    world.seat(org, admin, role="admin")
    world.seat(org, member)
    seat = _seat_id(world, org, member)
    world.issuer.rpc.deduct_credits_pooled(
        p_clerk_user_id=member, p_amount=3, p_description="before the cap", p_clerk_org_id=org
    )

    def cookie(user: str) -> dict[str, str]:
        return {"Cookie": f"__session={world.session(user, session_id='sess_caps_' + user)}"}

    page = world.client.get("/dashboard/caps", headers=cookie(admin), follow_redirects=False)
    assert page.status_code == 200
    assert "Capped Co" in page.text and "bob@capped.test" in page.text
    csrf = _Forms(page.text).csrf()

    saved = world.client.post(
        "/dashboard/caps/seat",
        data={"csrf_token": csrf, "seat_id": seat, "cap": "5", "period": "month"},
        headers=cookie(admin),
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    again = world.client.get("/dashboard/caps?notice=saved", headers=cookie(admin))
    assert "Cap saved" in again.text
    row = world.sql(
        "select cap, spent, remaining from public.seat_spend_vs_cap where seat_id = %s", (seat,)
    )
    assert row == [(Decimal(5), Decimal(3), Decimal(2))]

    # Without the CSRF token: refused, nothing changes.
    forged = world.client.post(
        "/dashboard/caps/seat",
        data={"seat_id": seat, "cap": "", "period": "month"},
        headers=cookie(admin),
        follow_redirects=False,
    )
    assert forged.status_code == 403

    # A member sees no org and may not set a cap, even with a valid form.
    member_page = world.client.get("/dashboard/caps", headers=cookie(member))
    assert "Capped Co" not in member_page.text
    refused = world.client.post(
        "/dashboard/caps/seat",
        data={
            "csrf_token": csrf_token(
                world.issuer, ClerkSession(member, "sess_caps_" + member, None, None, None, 2)
            ),
            "seat_id": seat,
            "cap": "1000",
            "period": "day",
        },
        headers=cookie(member),
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert world.sql("select spend_cap from public.organization_seats where id = %s", (seat,)) == [
        (Decimal(5),)
    ]
