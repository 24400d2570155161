"""deduct_credits_pooled_batch (issue 17): many deductions, one pool row lock, one commit.

C1, C4, C7 and F2 on the batched path, with real parallel connections:

* 64 clients with mixed amounts, half calling the batch RPC and half
  deduct_credits_pooled, drain one org pool to exactly zero: no overdraft,
  one ledger row per success, the balance_after chain unbroken, check empty;
* the element that would overdraw gets its own insufficient_credits while the
  others in the batch succeed;
* a key used in a batch and retried by a single call (and the other way
  round, and in two concurrent batches, and twice in one batch) charges once;
* a backend terminated while its batch waits for or holds the pool row
  writes nothing; the retried batch charges each key once.

    .venv/bin/pytest -q -s py/tests/test_ledger_batch.py
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from support import credits, faults
from support.credits import CreditResult

AMOUNTS = [Decimal("0.25"), Decimal("0.5"), Decimal("1"), Decimal("2.75")]
SMALLEST = Decimal("0.25")


def batch(
    conn: psycopg.Connection[Any], org: str, requests: list[dict[str, Any]]
) -> list[CreditResult]:
    rows = conn.execute(
        "select ok, pool, reason, transaction_id, amount, balance, replayed "
        "from public.deduct_credits_pooled_batch(%s, %s::jsonb)",
        (org, json.dumps(requests, default=str)),
    ).fetchall()
    return [CreditResult(*r) for r in rows]


def req(user: str, amount: Decimal, key: str | None = None, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"clerk_user_id": user, "amount": float(amount), "description": "chat"}
    if key is not None:
        r["idempotency_key"] = key
    r.update(kw)
    return r


def org_with_members(db_url: str, org: str, members: list[str], pool: Decimal) -> None:
    with credits.connect_service_role(db_url) as conn:
        credits.create_org(conn, org, name=f"{org} Inc", stripe_customer_id=f"cus_{org}")
        credits.create_subscription(conn, org, pool_credits=pool)
        for m in members:
            credits.create_seat(conn, org, m)


def assert_exact(db_url: str, org: str, start: Decimal, spent: Decimal, successes: int) -> None:
    with credits.connect_service_role(db_url) as conn:
        final = credits.pool_balance(conn, org)
        row = conn.execute(
            "select count(*), coalesce(-sum(t.amount), 0) from public.credit_transactions t "
            "join public.organizations o on o.id = t.organization_id "
            "where o.clerk_org_id = %s and t.kind = 'deduction'",
            (org,),
        ).fetchone()
        assert row is not None
        assert final == start - spent, (final, start, spent)
        assert final >= 0
        assert row[0] == successes, "one ledger row per successful deduction"
        assert row[1] == spent
        chain = conn.execute(
            "select t.amount, t.balance_after from public.credit_transactions t "
            "join public.organizations o on o.id = t.organization_id "
            "where o.clerk_org_id = %s and t.kind = 'deduction' order by t.balance_after desc",
            (org,),
        ).fetchall()
        balance = start
        for amount, balance_after in chain:
            balance += amount
            assert balance_after == balance, "balance_after is not the balance right after the row"
        assert credits.consistency_problems(conn) == []


def test_C1_batch_64_clients_mixed_amounts_drain_the_pool_to_exactly_zero(
    new_db: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    db_url = new_db()
    clients = 64
    start = Decimal("400")
    members = [f"user_b{i}" for i in range(clients)]
    org_with_members(db_url, "org_batch", members, start)
    spent: list[Decimal] = [Decimal(0)] * clients
    successes = [0] * clients
    errors: list[BaseException] = []
    conns = [credits.connect_service_role(db_url) for _ in range(clients)]
    barrier = threading.Barrier(clients)

    def work(i: int) -> None:
        rnd = random.Random(i)
        conn = conns[i]
        n = 0
        try:
            barrier.wait()
            while True:
                if i % 2 == 0:  # the batch RPC, 1..6 requests per call
                    amounts = [rnd.choice(AMOUNTS) for _ in range(rnd.randint(1, 6))]
                    amounts.append(SMALLEST)
                    keys = [f"k{i}-{n + j}" if (n + j) % 3 else None for j in range(len(amounts))]
                    n += len(amounts)
                    results = batch(
                        conn,
                        "org_batch",
                        [req(members[i], a, k) for a, k in zip(amounts, keys, strict=True)],
                    )
                    assert len(results) == len(amounts)
                    for a, r in zip(amounts, results, strict=True):
                        assert not r.replayed
                        if r.ok:
                            spent[i] += a
                            successes[i] += 1
                        else:
                            assert r.reason == "insufficient_credits", r
                            assert r.balance is not None and r.balance < a
                    if not results[-1].ok:  # even the smallest amount did not fit
                        return
                else:  # deduct_credits_pooled, falling back to the smallest amount
                    a = rnd.choice(AMOUNTS)
                    r = credits.deduct(conn, members[i], a, "chat", clerk_org_id="org_batch")
                    if not r.ok:
                        assert r.reason == "insufficient_credits", r
                        a = SMALLEST
                        r = credits.deduct(conn, members[i], a, "chat", clerk_org_id="org_batch")
                        if not r.ok:
                            return
                    spent[i] += a
                    successes[i] += 1
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    assert not errors, errors[:3]
    total = sum(spent, Decimal(0))
    assert total == start, "every multiple-of-0.25 credit is spent: the pool ends at exactly 0"
    assert_exact(db_url, "org_batch", start, total, sum(successes))
    with capsys.disabled():
        print(
            f"\n[C1 batch] clients={clients} successes={sum(successes)} spent={total} "
            f"final=0 elapsed={elapsed:.2f}s"
        )


def test_C1_the_overdrawing_element_gets_its_own_refusal(new_db: Callable[[], str]) -> None:
    db_url = new_db()
    org_with_members(db_url, "org_o", ["user_o1", "user_o2"], Decimal("10"))
    with credits.connect_service_role(db_url) as conn:
        results = batch(
            conn,
            "org_o",
            [
                req("user_o1", Decimal("4")),
                req("user_o2", Decimal("7")),  # 6 left: refused, alone
                req("user_o2", Decimal("6")),
                req("user_nobody", Decimal("1")),
            ],
        )
        assert [r.ok for r in results] == [True, False, True, False]
        assert results[0].balance == 6 and results[2].balance == 0
        assert results[1].reason == "insufficient_credits" and results[1].balance == 6
        assert results[3].reason == "unknown_user"
    assert_exact(db_url, "org_o", Decimal("10"), Decimal("10"), 2)


def test_C5_a_bad_element_refuses_the_whole_batch_and_writes_nothing(
    new_db: Callable[[], str],
) -> None:
    db_url = new_db()
    org_with_members(db_url, "org_v", ["user_v1"], Decimal("10"))
    with credits.connect_service_role(db_url) as conn:
        for bad in ({"amount": -1}, {"amount": 0.00001}, {"description": ""}):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                batch(
                    conn,
                    "org_v",
                    [req("user_v1", Decimal(1)), {**req("user_v1", Decimal(1)), **bad}],
                )
    assert_exact(db_url, "org_v", Decimal("10"), Decimal(0), 0)


def test_C4_a_key_retried_across_the_batch_boundary_charges_once(
    new_db: Callable[[], str],
) -> None:
    db_url = new_db()
    org_with_members(db_url, "org_k", ["user_k1", "user_k2"], Decimal("100"))
    with credits.connect_service_role(db_url) as conn:
        # batch first, then the single call with the same key: a replay
        first = batch(conn, "org_k", [req("user_k1", Decimal(2), "a"), req("user_k2", Decimal(3))])
        again = credits.deduct(
            conn, "user_k1", Decimal(2), "chat", clerk_org_id="org_k", idempotency_key="a"
        )
        assert again.ok and again.replayed
        assert again.transaction_id == first[0].transaction_id
        # single call first, then a batch repeating it (twice) next to a new key
        single = credits.deduct(
            conn, "user_k2", Decimal(5), "chat", clerk_org_id="org_k", idempotency_key="b"
        )
        res = batch(
            conn,
            "org_k",
            [
                req("user_k2", Decimal(5), "b"),
                req("user_k2", Decimal(1), "c"),
                req("user_k2", Decimal(5), "b"),
            ],
        )
        assert [r.replayed for r in res] == [True, False, True]
        assert res[0].transaction_id == res[2].transaction_id == single.transaction_id
        # the same key twice inside one fresh batch: applied once, repeated once
        res = batch(
            conn, "org_k", [req("user_k1", Decimal(1), "d"), req("user_k1", Decimal(1), "d")]
        )
        assert [r.replayed for r in res] == [False, True]
        assert res[0].transaction_id == res[1].transaction_id
        # other arguments under a used key: 23505, nothing written
        with pytest.raises(psycopg.errors.UniqueViolation):
            batch(conn, "org_k", [req("user_k1", Decimal(9), "a")])
        # the same key for ANOTHER spender is another namespace (L7)
        other = batch(conn, "org_k", [req("user_k2", Decimal(2), "a")])
        assert other[0].ok and not other[0].replayed
    assert_exact(db_url, "org_k", Decimal("100"), Decimal(2 + 3 + 5 + 1 + 1 + 2), 6)


def test_C4_concurrent_batches_repeating_keys_charge_each_once(
    new_db: Callable[[], str],
) -> None:
    db_url = new_db()
    users = [f"user_c{i}" for i in range(4)]
    org_with_members(db_url, "org_c", users, Decimal("1000"))
    keys = [(u, f"key{j}") for u in users for j in range(5)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        rnd = random.Random(i)
        mine = keys[:]
        rnd.shuffle(mine)
        try:
            with credits.connect_service_role(db_url) as conn:
                for s in range(0, len(mine), 4):
                    batch(conn, "org_c", [req(u, Decimal(1), k) for u, k in mine[s : s + 4]])
                for u, k in mine[:3]:  # and single retries
                    r = credits.deduct(
                        conn, u, Decimal(1), "chat", clerk_org_id="org_c", idempotency_key=k
                    )
                    assert r.ok and r.replayed
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert_exact(db_url, "org_c", Decimal("1000"), Decimal(len(keys)), len(keys))


def test_F2_backend_killed_mid_batch_loses_and_duplicates_nothing(
    new_db: Callable[[], str],
) -> None:
    db_url = new_db()
    users = [f"user_f{i}" for i in range(3)]
    org_with_members(db_url, "org_f", users, Decimal("100"))
    app = "f2-batch"
    url = f"{db_url}{'&' if '?' in db_url else '?'}application_name={app}"
    requests = [req(u, Decimal("1.5"), f"f-{u}") for u in users] + [req(users[0], Decimal(1))]

    # 1. killed while waiting for the pool row (held by another transaction)
    holder = psycopg.connect(db_url)
    holder.execute(
        "select s.id from public.organization_subscriptions s join public.organizations o "
        "on o.id = s.organization_id where o.clerk_org_id = 'org_f' and s.is_current for update"
    )
    seen: list[BaseException] = []

    def call() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("set role service_role")
                batch(conn, "org_f", requests)
        except psycopg.OperationalError as exc:
            seen.append(exc)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    killed = 0
    while not killed and time.monotonic() < deadline:
        time.sleep(0.05)
        killed = faults.terminate_backends(url, app, ("active",))
    t.join(10)
    holder.rollback()
    holder.close()
    assert killed and seen, "the batch was terminated while it waited"
    assert_exact(db_url, "org_f", Decimal("100"), Decimal(0), 0)

    # 2. killed after the batch ran, before its commit (an explicit transaction)
    conn = psycopg.connect(url)
    conn.execute("set role service_role")
    batch(conn, "org_f", requests)
    assert faults.terminate_backends(url, app, ("idle in transaction",)) == 1
    with pytest.raises(psycopg.OperationalError):
        conn.commit()
    conn.close()
    assert_exact(db_url, "org_f", Decimal("100"), Decimal(0), 0)

    # 3. the retry charges each key once; a second retry replays them all
    with credits.connect_service_role(db_url) as c:
        first = batch(c, "org_f", requests)
        assert all(r.ok and not r.replayed for r in first)
        second = batch(c, "org_f", requests[:3])
        assert all(r.ok and r.replayed for r in second)
        assert [r.transaction_id for r in second] == [r.transaction_id for r in first[:3]]
    assert_exact(db_url, "org_f", Decimal("100"), Decimal("5.5"), 4)
