"""C1 under real concurrency: many connections, one pool or many, no overdraft, no lost update.

Each client is a thread with its own psycopg connection acting as
``service_role``; every call is its own transaction (autocommit), as the
issuer makes it. The clients start together (a barrier) and ask for more
than the pools hold, so some deductions succeed and the rest are refused
with ``insufficient_credits``. Afterwards:

* every pool's balance is exactly ``start - sum(successful)`` and never below 0;
* the ledger holds one row per success, its balances form one unbroken chain
  (each ``balance_after`` is the previous minus the amount: no lost update);
* ``credit_consistency_check()`` is empty (C7).

The figures (clients, deductions, final balances, elapsed time) are printed.
Reproduce them with::

    .venv/bin/pytest -q -s py/tests/test_ledger_concurrency.py

(Test clusters run with fsync off; ``make bench`` measures throughput on
durable settings. These tests assert correctness, never timings.)
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from support import credits
from support.credits import CreditResult

CLIENTS = 32
CALLS_PER_CLIENT = 40
AMOUNTS = [Decimal("0.5"), Decimal("1"), Decimal("2.25"), Decimal("3.7500")]


@dataclass
class Outcome:
    """What one client saw: (pool key, amount, result) per call."""

    calls: list[tuple[str, Decimal, CreditResult]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def run_clients(
    db_url: str, clients: int, work: Callable[[psycopg.Connection[Any], int, Outcome], None]
) -> tuple[list[Outcome], float]:
    """Run ``work`` in ``clients`` threads, each with its own connection, started together."""
    outcomes = [Outcome() for _ in range(clients)]
    connections = [credits.connect_service_role(db_url) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        try:
            barrier.wait()
            work(connections[i], i, outcomes[i])
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            outcomes[i].errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for conn in connections:
        conn.close()
    errors = [e for o in outcomes for e in o.errors]
    assert not errors, f"clients raised: {errors[:3]}"
    return outcomes, elapsed


def assert_unbroken_chain(
    conn: psycopg.Connection[Any], start: Decimal, where: str, params: tuple[Any, ...]
) -> None:
    """The pool's deductions, in balance order, each take exactly their amount off the previous."""
    rows = conn.execute(
        "select amount, balance_after from public.credit_transactions as t "
        f"where t.kind = 'deduction' and {where} order by balance_after desc",
        params,
    ).fetchall()
    balance = start
    for amount, balance_after in rows:
        balance += amount  # amount is negative
        assert balance_after == balance, "a deduction did not start from its predecessor's balance"
    assert len({r[1] for r in rows}) == len(rows), "two deductions saw the same balance"


def report(capsys: pytest.CaptureFixture[str], title: str, lines: list[str]) -> None:
    with capsys.disabled():
        print(f"\n[C1] {title}")
        for line in lines:
            print(f"     {line}")


def test_one_org_pool_many_clients(
    new_db: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    db_url = new_db()
    start = Decimal("1000")
    with credits.connect_service_role(db_url) as conn:
        credits.create_org(conn, "org_hot", name="Hot Pool Inc", stripe_customer_id="cus_hot")
        credits.create_subscription(conn, "org_hot", pool_credits=start)
        members = [f"user_member_{i}" for i in range(CLIENTS)]
        for m in members:
            credits.create_seat(conn, "org_hot", m)

    def work(conn: psycopg.Connection[Any], i: int, out: Outcome) -> None:
        rnd = random.Random(i)
        for n in range(CALLS_PER_CLIENT):
            amount = rnd.choice(AMOUNTS)
            key = f"c{i}-n{n}" if n % 2 else None
            result = credits.deduct(
                conn,
                members[i],
                amount,
                "concurrent chat",
                clerk_org_id="org_hot",
                idempotency_key=key,
            )
            out.calls.append(("org_hot", amount, result))

    outcomes, elapsed = run_clients(db_url, CLIENTS, work)
    calls = [c for o in outcomes for c in o.calls]
    ok = [(amount, r) for _, amount, r in calls if r.ok]
    refused = Counter(r.reason for _, _, r in calls if not r.ok)
    spent = sum((amount for amount, _ in ok), Decimal(0))

    with credits.connect_service_role(db_url) as conn:
        final = credits.pool_balance(conn, "org_hot")
        rows = conn.execute(
            "select count(*), coalesce(sum(amount), 0) from public.credit_transactions "
            "where kind = 'deduction'"
        ).fetchone()
        assert rows is not None
        assert final == start - spent, "balance is not start minus the successful deductions"
        assert final >= 0
        assert rows[0] == len(ok), "one ledger row per successful deduction"
        assert -rows[1] == spent
        assert_unbroken_chain(conn, start, "t.pool = 'organization'", ())
        assert credits.consistency_problems(conn) == []

    assert set(refused) <= {"insufficient_credits"}, refused
    assert ok and refused, "the test must exhaust the pool: both successes and refusals"
    assert all(r.balance is not None and r.balance >= 0 for _, r in ok)
    assert not any(r.replayed for _, r in ok), "distinct keys never replay"

    report(
        capsys,
        "one org pool",
        [
            f"clients={CLIENTS} calls={len(calls)} successful={len(ok)} "
            f"refused={sum(refused.values())} ({dict(refused)})",
            f"start={start} spent={spent} final_balance={final} "
            f"elapsed={elapsed:.2f}s ({len(calls) / elapsed:.0f} calls/s)",
        ],
    )


def test_many_pools_and_personal_credits(
    new_db: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    db_url = new_db()
    orgs = [f"org_many_{i}" for i in range(8)]
    people = [f"user_solo_{i}" for i in range(8)]
    org_start = Decimal("150")
    personal_start = Decimal("60")
    with credits.connect_service_role(db_url) as conn:
        for org in orgs:
            credits.create_org(conn, org)
            credits.create_subscription(conn, org, pool_credits=org_start)
        for c in range(CLIENTS):
            # Client c spends as a member of two orgs and from its own personal credits.
            user = f"user_client_{c}"
            credits.create_user(conn, user, personal_credits=personal_start if c < 8 else 0)
            credits.create_seat(conn, orgs[c % 8], user)
            credits.create_seat(conn, orgs[(c + 3) % 8], user)
        for p in people:
            credits.create_user(conn, p, personal_credits=personal_start)

    def work(conn: psycopg.Connection[Any], i: int, out: Outcome) -> None:
        rnd = random.Random(1000 + i)
        user = f"user_client_{i}"
        for n in range(CALLS_PER_CLIENT):
            amount = rnd.choice(AMOUNTS)
            choice = rnd.random()
            if choice < 0.6:
                org = orgs[(i + (3 if n % 2 else 0)) % 8]
                r = credits.deduct(conn, user, amount, "many pools", clerk_org_id=org)
                out.calls.append((org, amount, r))
            elif choice < 0.8 and i < 8:
                r = credits.deduct(conn, user, amount, "own credits")
                out.calls.append((user, amount, r))
            else:
                # Someone else's personal credits: the shared ones of user_solo_*.
                p = people[rnd.randrange(len(people))]
                r = credits.deduct(conn, p, amount, "shared personal")
                out.calls.append((p, amount, r))

    outcomes, elapsed = run_clients(db_url, CLIENTS, work)
    calls = [c for o in outcomes for c in o.calls]
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for pool, amount, r in calls:
        if r.ok:
            spent[pool] += amount
    refused = Counter(r.reason for _, _, r in calls if not r.ok)
    assert set(refused) <= {"insufficient_credits"}, refused

    finals: dict[str, Decimal] = {}
    with credits.connect_service_role(db_url) as conn:
        for org in orgs:
            finals[org] = credits.pool_balance(conn, org)
            assert finals[org] == org_start - spent[org], org
            assert credits.ledger_sum(conn, clerk_org_id=org) == finals[org]
            assert_unbroken_chain(
                conn,
                org_start,
                "t.organization_id = (select id from public.organizations where clerk_org_id = %s)",
                (org,),
            )
        personal = people + [f"user_client_{c}" for c in range(8)]
        for user in personal:
            finals[user] = credits.personal_balance(conn, user)
            assert finals[user] == personal_start - spent[user], user
            assert credits.ledger_sum(conn, clerk_user_id=user) == finals[user]
            assert_unbroken_chain(
                conn,
                personal_start,
                "t.pool = 'personal' and t.user_id = (select id from public.users where clerk_user_id = %s)",
                (user,),
            )
        assert all(v >= 0 for v in finals.values())
        assert credits.consistency_problems(conn) == []

    ok_count = sum(1 for _, _, r in calls if r.ok)
    report(
        capsys,
        "many pools (8 org pools, 16 personal)",
        [
            f"clients={CLIENTS} calls={len(calls)} successful={ok_count} refused={sum(refused.values())}",
            "final balances: "
            + " ".join(f"{k}={v}" for k, v in sorted(finals.items()) if k.startswith("org_")),
            f"personal total={sum((v for k, v in finals.items() if k.startswith('user_')), Decimal(0))} "
            f"elapsed={elapsed:.2f}s ({len(calls) / elapsed:.0f} calls/s)",
        ],
    )


def test_one_key_from_many_clients_deducts_once(
    new_db: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """C4 under concurrency: 32 clients retry the same request at the same moment."""
    db_url = new_db()
    with credits.connect_service_role(db_url) as conn:
        credits.create_org(conn, "org_retry")
        credits.create_subscription(conn, "org_retry", pool_credits=100)
        credits.create_seat(conn, "org_retry", "user_retry")

    def work(conn: psycopg.Connection[Any], i: int, out: Outcome) -> None:
        r = credits.deduct(
            conn,
            "user_retry",
            7,
            "retried",
            clerk_org_id="org_retry",
            idempotency_key="same-request",
        )
        out.calls.append(("org_retry", Decimal(7), r))

    outcomes, elapsed = run_clients(db_url, CLIENTS, work)
    results = [r for o in outcomes for _, _, r in o.calls]
    firsts = [r for r in results if not r.replayed]
    assert len(firsts) == 1 and firsts[0].ok
    assert all(r.ok and r.replayed for r in results if r is not firsts[0])
    assert {r.transaction_id for r in results} == {firsts[0].transaction_id}
    assert {r.balance for r in results} == {Decimal(93)}
    with credits.connect_service_role(db_url) as conn:
        assert credits.pool_balance(conn, "org_retry") == Decimal(93)
        assert credits.consistency_problems(conn) == []
    report(
        capsys,
        "one idempotency key from many clients",
        [f"clients={CLIENTS} deducted_once=True replays={len(results) - 1} elapsed={elapsed:.2f}s"],
    )


def test_concurrent_refunds_never_exceed_the_original(
    new_db: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    db_url = new_db()
    with credits.connect_service_role(db_url) as conn:
        credits.create_org(conn, "org_refund")
        credits.create_subscription(conn, "org_refund", pool_credits=100)
        credits.create_seat(conn, "org_refund", "user_refund")
        original = credits.deduct(conn, "user_refund", 10, "to refund", clerk_org_id="org_refund")
        assert original.ok and original.transaction_id is not None
    tx = original.transaction_id

    def work(conn: psycopg.Connection[Any], i: int, out: Outcome) -> None:
        for _ in range(2):
            out.calls.append(("org_refund", Decimal(1), credits.refund(conn, tx, 1)))

    outcomes, elapsed = run_clients(db_url, CLIENTS, work)
    results = [r for o in outcomes for _, _, r in o.calls]
    assert sum(1 for r in results if r.ok) == 10
    assert {r.reason for r in results if not r.ok} == {"refund_exceeds_remaining"}
    with credits.connect_service_role(db_url) as conn:
        assert credits.pool_balance(conn, "org_refund") == Decimal(100)
        assert credits.consistency_problems(conn) == []
    report(
        capsys,
        "concurrent refunds of one deduction",
        [f"clients={CLIENTS} attempts={len(results)} refunded=10 of 10 elapsed={elapsed:.2f}s"],
    )
