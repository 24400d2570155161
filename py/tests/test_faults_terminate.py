"""F2: backends terminated mid-transaction during deductions lose nothing and
duplicate nothing; the retry with the same idempotency key is what makes it safe.

* Through the issuer's own client (issuer.rpc, PsycopgRpc): deductions are
  held mid-transaction by a row lock on the org pool, their backends are
  terminated (``pg_terminate_backend``), the callers see DatabaseUnavailable
  (503) only and retry the same key. Idle pooled connections that were
  terminated are replaced before a statement is sent: no call fails for them.
* With plain psycopg transactions (BEGIN, deduct, a short sleep, COMMIT)
  killed at random moments by a killer thread, clients reconnecting and
  retrying the same key.

Afterwards the balance is exact, every key has exactly one ledger row, and
C7 (credit_consistency_check) is empty.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import psycopg

from issuer.errors import DatabaseUnavailable
from issuer.rpc import PsycopgRpc, Rpc
from support import faults
from support.world import World

ROUNDS = 3
RACERS = 6


def _with_app(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def _pool_row_lock(world: World, org: str) -> psycopg.Connection[Any]:
    """A connection holding FOR UPDATE on the org's pool row (until rollback)."""
    conn = psycopg.connect(world.db_url)
    conn.execute(
        "select s.id from public.organization_subscriptions s "
        "join public.organizations o on o.id = s.organization_id "
        "where o.clerk_org_id = %s and s.is_current for update",
        (org,),
    )
    return conn


def test_F2_terminated_mid_deduction_through_the_issuer_client(world: World) -> None:
    org = world.org(pool=1000, name="Terminate Co")
    users = [world.user() for _ in range(RACERS)]
    for u in users:
        world.seat(org, u)
    app = "f2-rpc"
    rpc = Rpc(PsycopgRpc(_with_app(world.db_url, app), max_size=RACERS + 2))
    amount = Decimal("1.25")
    errors: Counter[str] = Counter()
    results: dict[str, Any] = {}
    lock = threading.Lock()

    def spend(user: str, key: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                r = rpc.deduct_credits_pooled(
                    p_clerk_user_id=user,
                    p_amount=amount,
                    p_description="f2",
                    p_clerk_org_id=org,
                    p_idempotency_key=key,
                )
            except DatabaseUnavailable:
                with lock:
                    errors["database_unavailable"] += 1
                time.sleep(0.05)
                continue
            except Exception as exc:  # noqa: BLE001 - any other error fails the test
                with lock:
                    errors[type(exc).__name__] += 1
                return
            with lock:
                results[key] = r
            return

    terminated = 0
    try:
        for rnd in range(ROUNDS):
            blocker = _pool_row_lock(world, org)
            threads = [
                threading.Thread(target=spend, args=(u, f"f2r{rnd}-{i}"), daemon=True)
                for i, u in enumerate(users)
            ]
            for t in threads:
                t.start()
            try:
                # Every deduction is inside its transaction, waiting for the pool row.
                faults.wait_for_backends(world.db_url, app, RACERS, wait_event_type="Lock")
                terminated += faults.terminate_backends(world.db_url, app, ("active",))
                # The retries (same keys, new connections) queue on the lock again.
                faults.wait_for_backends(world.db_url, app, RACERS, wait_event_type="Lock")
            finally:
                blocker.rollback()
                blocker.close()
            for t in threads:
                t.join(30)
                assert not t.is_alive()

            # Idle pooled connections terminated between calls: replaced before
            # a statement is sent, so these calls do not fail at all.
            before = errors["database_unavailable"]
            terminated += faults.terminate_backends(world.db_url, app, ("idle",))
            for i in range(RACERS):
                spend(users[i], f"f2idle{rnd}-{i}")
            assert errors["database_unavailable"] == before, "an idle dead connection was used"
    finally:
        rpc.close()

    assert set(errors) == {"database_unavailable"}, errors
    assert errors["database_unavailable"] >= ROUNDS * RACERS
    assert terminated >= ROUNDS * RACERS
    expected = 2 * ROUNDS * RACERS
    assert len(results) == expected and all(r.ok for r in results.values())
    rows = faults.ledger_rows(world.db_url, "f2")
    assert len(rows) == expected and len({k for k, _, _ in rows}) == expected
    assert {k: i for k, i, _ in rows} == {k: str(r.transaction_id) for k, r in results.items()}
    assert world.pool_balance(org) == Decimal(1000) - expected * amount
    assert faults.duplicate_keys(world.db_url) == []
    assert world.consistency_problems() == []
    print(
        f"\nF2 (issuer client): {terminated} backends terminated "
        f"({ROUNDS * RACERS} mid-transaction, the rest idle in the pool), "
        f"{errors['database_unavailable']} x DatabaseUnavailable, 0 other errors, "
        f"{expected} charges each in the ledger once, balance exact"
    )


def test_F2_random_kills_of_explicit_transactions(world: World) -> None:
    org = world.org(pool=500, name="Killed Co")
    users = [world.user(personal=100) for _ in range(RACERS)]
    for u in users[: RACERS // 2]:
        world.seat(org, u)
    app = "f2-raw"
    url = _with_app(world.db_url, app)
    per_thread = 12
    amount = Decimal("0.75")
    stop = threading.Event()
    client_errors: Counter[str] = Counter()
    done: dict[str, tuple[str, bool]] = {}
    lock = threading.Lock()

    def spend(i: int) -> None:
        user = users[i]
        org_id = org if i < RACERS // 2 else None
        conn: psycopg.Connection[Any] | None = None
        for n in range(per_thread):
            key = f"f2k{i}-{n}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(url, connect_timeout=5)
                    with conn.transaction():
                        conn.execute("set local role service_role")
                        row = conn.execute(
                            "select r.ok, r.transaction_id::text, r.replayed "
                            "from public.deduct_credits_pooled("
                            " p_clerk_user_id => %s, p_amount => %s, p_description => 'f2',"
                            " p_clerk_org_id => %s, p_idempotency_key => %s) as r",
                            (user, amount, org_id, key),
                        ).fetchone()
                        # Keep the transaction open a little: the killer's window.
                        conn.execute("select pg_sleep(%s)", (random.uniform(0.005, 0.03),))
                    assert row is not None and row[0] is True, row
                    with lock:
                        done[key] = (str(row[1]), bool(row[2]))
                    break
                except psycopg.OperationalError as exc:
                    with lock:
                        client_errors[type(exc).__name__] += 1
                    if conn is not None:
                        conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    kills = 0

    def killer() -> None:
        nonlocal kills
        while not stop.wait(random.uniform(0.02, 0.06)):
            kills += faults.terminate_backends(url, app, ("active", "idle in transaction"))

    threads = [threading.Thread(target=spend, args=(i,), daemon=True) for i in range(RACERS)]
    k = threading.Thread(target=killer, daemon=True)
    k.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    stop.set()
    k.join(10)

    total = RACERS * per_thread
    assert len(done) == total, f"{total - len(done)} charges never committed"
    assert kills > 0 and sum(client_errors.values()) > 0, (kills, client_errors)
    rows = faults.ledger_rows(world.db_url, "f2k")
    assert len(rows) == total and len({k for k, _, _ in rows}) == total
    assert {k: i for k, i, _ in rows} == {k: tid for k, (tid, _) in done.items()}
    org_charges = sum(1 for key in done if int(key[3 : key.index("-")]) < RACERS // 2)
    assert world.pool_balance(org) == Decimal(500) - org_charges * amount
    for u in users[RACERS // 2 :]:
        assert world.personal_balance(u) == Decimal(100) - per_thread * amount
    assert faults.duplicate_keys(world.db_url) == []
    assert world.consistency_problems() == []
    print(
        f"\nF2 (explicit transactions): {kills} backends killed at random, "
        f"{sum(client_errors.values())} client errors {dict(client_errors)}, "
        f"{total} charges each in the ledger once, balances exact"
    )
