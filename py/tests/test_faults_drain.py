"""F3: many clients drain one pool at once: clean 402s after exhaustion, nothing else.

* 32 client threads spend one org pool through a real `issuer serve` until
  each has been refused once: every answer is a 200 or a 402
  ``insufficient_credits`` (with the pool and the organization's name), no 402
  arrives before the pool is empty, the 200s' ``remaining`` values are
  exactly the balances from the pool size down to zero (each once), and the
  balance ends at exactly zero.
* The same with 32 threads on the issuer's RPC client against one personal
  pool and fractional amounts.

C7 (credit_consistency_check) holds afterwards.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import pytest

from issuer.errors import IssuerError
from issuer.rpc import CreditResult, PsycopgRpc, Rpc
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import Served, issuer_serve
from support import faults
from support.world import World, issuer_env

THREADS = 32
POOL = 320


@pytest.fixture(scope="module")
def served(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with issuer_serve(issuer_env(world.db_url, fake_clerk), tmp_path_factory.mktemp("f3")) as s:
        yield s


def test_F3_32_clients_drain_one_org_pool_over_http(world: World, served: Served) -> None:
    org = world.org(pool=POOL, name="Drain Co")
    tokens = []
    for _ in range(8):  # 8 members, 4 client threads each
        user = world.user()
        world.seat(org, user)
        tokens.append(world.extension_token(user, org))
    stop = threading.Event()
    t0 = time.monotonic()
    clients = [
        faults.UsageClient(served.url, tokens[i % len(tokens)], f"f3c{i}", stop, until_402=True)
        for i in range(THREADS)
    ]
    for c in clients:
        c.start()
    for c in clients:
        c.join(timeout=90)
    elapsed = time.monotonic() - t0

    answers = [a for c in clients for a in c.answers]
    statuses = Counter(a.status for a in answers)
    assert set(statuses) == {200, 402}, [a for a in answers if a.status not in (200, 402)][:5]
    refused = [a for a in answers if a.status == 402]
    assert {a.error for a in refused} == {"insufficient_credits"}
    assert len(refused) == THREADS  # each client stops after its first refusal
    charged = [a for a in answers if a.status == 200]
    assert len(charged) == POOL
    # Serialized and exact: the remaining balances are POOL-1 ... 0, each once.
    assert sorted(int(a.remaining or 0) for a in charged) == list(range(POOL))
    # No 402 before exhaustion: each refusal ended after the last charge began.
    last = next(a for a in charged if a.remaining == 0)
    assert all(a.ended >= last.started for a in refused)
    assert world.pool_balance(org) == 0
    assert len(faults.ledger_rows(world.db_url, "f3c")) == POOL
    assert world.consistency_problems() == []
    assert "Traceback" not in served.log()
    # Coalesced (issue 17, USAGE_COALESCING on by default): rows of one batch
    # share their transaction's now(), so fewer transactions than rows.
    ((transactions,),) = world.sql(
        "select count(distinct created_at) from public.credit_transactions "
        "where idempotency_key like 'f3c%'"
    )
    assert transactions < POOL
    lat = [a.ended - a.started for a in answers]
    print(
        f"\nF3 (HTTP): {THREADS} clients, {len(answers)} requests in {elapsed:.1f} s: "
        f"{statuses[200]} x 200, {statuses[402]} x 402 insufficient_credits, 0 other; "
        f"{transactions} transactions; "
        f"balance 0; p50 {faults.percentile(lat, 50) * 1000:.0f} ms, "
        f"p99 {faults.percentile(lat, 99) * 1000:.0f} ms"
    )


def test_F3_32_threads_drain_one_personal_pool_through_the_rpc(world: World) -> None:
    amount = Decimal("0.25")
    start = Decimal(50)
    user = world.user(personal=start)
    rpc = Rpc(PsycopgRpc(world.db_url, max_size=16))
    results: list[CreditResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def drain(i: int) -> None:
        barrier.wait(10)
        n = 0
        while True:
            n += 1
            try:
                r = rpc.deduct_credits_pooled(
                    p_clerk_user_id=user,
                    p_amount=amount,
                    p_description="f3",
                    p_idempotency_key=f"f3r{i}-{n}",
                )
            except IssuerError as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(r)
            if not r.ok:
                return

    threads = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(THREADS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
            assert not t.is_alive()
    finally:
        rpc.close()
    assert errors == []
    ok = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert len(ok) == int(start / amount)
    assert {r.reason for r in refused} == {"insufficient_credits"} and len(refused) == THREADS
    assert sorted(r.balance for r in ok if r.balance is not None) == [
        amount * k for k in range(int(start / amount))
    ]
    assert world.personal_balance(user) == 0
    assert world.consistency_problems() == []
