"""POST /api/extension/usage with coalescing (issue 17, issuer.coalescing): real database.

A batch is made deterministic by holding the pool row's lock from another
connection: the first request goes alone (its single call waits on the
lock), the next ones queue up one by one (the test waits until each is
queued), and releasing the lock lets the first finish and the queued ones go
as one ``deduct_credits_pooled_batch`` call. The same requests are then sent
one by one to an app without coalescing, on an identical pool: the answers
must be identical (status and body; transaction ids compared by where they
first appeared).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from issuer.api import create_app
from issuer.coalescing import Coalescer
from issuer.errors import ConfigError
from issuer.settings import load_settings
from support.world import World, issuer_env

Spec = tuple[str, object, str | None, dict[str, Any]]  # (who, amount, key, extra body)


def _app(world: World, *, coalescing: bool) -> FastAPI:
    app = create_app(world.issuer)
    assert isinstance(app.state.coalescer, Coalescer)  # on by default
    if not coalescing:
        app.state.coalescer = None
    return app


_LOCK_POOL_ROW = (
    "select s.credits_balance from public.organization_subscriptions s "
    "join public.organizations o on o.id = s.organization_id "
    "where o.clerk_org_id = %s and s.is_current for update of s"
)


@contextmanager
def _pool_row_locked(world: World, org: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold the org pool row's lock (as a concurrent deduction would) until the block ends."""
    with psycopg.connect(world.db_url) as conn:
        conn.execute(_LOCK_POOL_ROW, (org,))
        yield conn
        conn.rollback()


def _queued(coalescer: Coalescer, org: str) -> int:
    pools = coalescer._pools
    queue = pools.get(org)
    return len(queue.pending) if queue is not None else -1


async def _wait_for(predicate: Any, what: str, timeout: float = 15, why: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {why() if why else ''}")
        await asyncio.sleep(0.005)


def _waiting_on_lock(world: World, fn: str) -> list[int]:
    return [
        r[0]
        for r in world.sql(
            "select pid from pg_stat_activity where wait_event_type = 'Lock' "
            "and query like %s and pid <> pg_backend_pid()",
            (f'%{fn}"(%',),
        )
    ]


def _request(token: str, amount: object, key: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return {"json": {"amount": amount, "description": "completion", **extra}, "headers": headers}


async def _coalesced(
    world: World,
    app: FastAPI,
    org: str,
    requests: list[dict[str, Any]],
    release: Callable[[psycopg.Connection[Any]], Awaitable[None]] | None = None,
) -> list[httpx.Response]:
    """requests[0] alone, then requests[1:] as one batch (module docstring).

    ``release(holder)`` lets the row go (default: commit the holder at once).
    """
    coalescer: Coalescer = app.state.coalescer
    before = coalescer.stats.batches
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with _pool_row_locked(world, org) as holder:
            tasks = [asyncio.create_task(client.post("/api/extension/usage", **requests[0]))]
            await _wait_for(
                lambda: _waiting_on_lock(world, "deduct_credits_pooled"), "the first call"
            )
            for i, req in enumerate(requests[1:], start=1):
                tasks.append(asyncio.create_task(client.post("/api/extension/usage", **req)))
                await _wait_for(lambda i=i: _queued(coalescer, org) == i, f"request {i} queued")
            if release is None:
                holder.commit()  # releases the row: the first finishes, the rest go as one batch
            else:
                await release(holder)
        responses = await asyncio.gather(*tasks)
    assert coalescer.stats.batches == before + 1
    return list(responses)


async def _one_by_one(app: FastAPI, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return [await client.post("/api/extension/usage", **req) for req in requests]


def _normalized(responses: list[httpx.Response]) -> list[tuple[int, Any]]:
    ids: dict[str, int] = {}
    out = []
    for r in responses:
        body = r.json()
        if isinstance(body, dict) and body.get("transaction_id"):
            body["transaction_id"] = ids.setdefault(body["transaction_id"], len(ids))
        out.append((r.status_code, body))
    return out


def _twin_orgs(world: World, pool: int) -> dict[str, dict[str, str]]:
    """Two identical orgs (one per path): per org, tokens of an active, a suspended
    and a revoked member, and a personal token."""
    out: dict[str, dict[str, str]] = {}
    for path in ("coalesced", "single"):
        org = world.org(pool=pool, name="Acme Inc")
        active, suspended, revoked = world.user(), world.user(), world.user(personal=2)
        world.seat(org, active)
        world.seat(org, suspended)
        world.seat(org, revoked)
        tokens = {
            "org": org,
            "active_user": active,
            "active": world.extension_token(active, org),
            "suspended": world.extension_token(suspended, org),
            "revoked": world.extension_token(revoked, org),
            "personal": world.extension_token(revoked),
        }
        world.set_seat(org, suspended, "suspended")
        world.set_seat(org, revoked, "revoked")
        out[path] = tokens
    return out


def _compare(world: World, pool: int, before: list[Spec], mix: list[Spec]) -> list[tuple[int, Any]]:
    """``before`` sent one by one, then ``mix`` coalesced / one by one: the same answers."""
    orgs = _twin_orgs(world, pool)
    answers = {}
    for path, coalescing in (("coalesced", True), ("single", False)):
        tokens = orgs[path]
        app = _app(world, coalescing=coalescing)
        first = [_request(tokens[who], amt, key, extra) for who, amt, key, extra in before]
        reqs = [_request(tokens[who], amt, key, extra) for who, amt, key, extra in mix]
        pre = asyncio.run(_one_by_one(app, first))
        if coalescing:
            got = asyncio.run(_coalesced(world, app, tokens["org"], reqs))
        else:
            got = asyncio.run(_one_by_one(app, reqs))
        answers[path] = _normalized(pre + got)
        assert world.pool_balance(tokens["org"]) >= 0
    assert answers["coalesced"] == answers["single"]
    assert world.pool_balance(orgs["coalesced"]["org"]) == world.pool_balance(orgs["single"]["org"])
    assert world.consistency_problems() == []
    return answers["single"]


def test_C1_C3_C4_a_coalesced_batch_answers_each_request_as_its_single_call(
    world: World,
) -> None:
    """The batch path proper: replays, refusals and successes in one batch."""
    before: list[Spec] = [("active", 1, "early", {})]
    mix: list[Spec] = [
        ("active", 2, None, {}),  # alone (the row is held)
        ("active", 3, "k1", {"context": {"file": "a.py", "n": 1.5}}),
        ("active", 3, "k1", {"context": {"file": "a.py", "n": 1.5}}),  # repeat in the batch
        ("suspended", 1, None, {}),  # 403 no_active_seat (C3)
        ("revoked", 1, "r1", {}),  # 403 no_active_seat
        ("active", 8, None, {}),  # 402: would overdraw (C1)
        ("active", "1.25", None, {}),  # a smaller one still succeeds
        ("active", 1, "early", {}),  # replays the charge made before the batch (C4)
        ("personal", 1, None, {}),  # personal pool: a single call, not queued
        ("active", 2.75, "k2", {}),  # exactly the rest? 10-1-2-3-1.25-2.75 = 0
        ("active", "0.0001", None, {}),  # 402 at zero
    ]
    # The personal request is not queued: send it before the batch instead.
    personal = mix.pop(8)
    answers = _compare(world, 10, [*before, personal], mix)
    statuses = [s for s, _ in answers]
    assert statuses == [200, 200, 200, 200, 200, 403, 403, 402, 200, 200, 200, 402], answers
    assert answers[4][1]["replayed"] is True and answers[4][1]["transaction_id"] == 3
    assert answers[9][1]["replayed"] is True and answers[9][1]["transaction_id"] == 0
    assert answers[10][1]["remaining"] == 0
    assert answers[7][1] == {
        "error": "insufficient_credits",
        "pool": "organization",
        "organization_name": "Acme Inc",
    }


def test_C5_C4_a_batch_refused_as_a_whole_falls_back_and_no_request_fails_its_neighbours(
    world: World,
) -> None:
    """22023 for one element, 23505 for a key reused with other arguments: single calls."""
    before: list[Spec] = [("active", 1, "used", {})]
    mix: list[Spec] = [
        ("active", 1, None, {}),  # alone
        ("active", 1, "a", {}),
        ("active", "0.00001", None, {}),  # 22023: more than 4 decimal places (400)
        ("active", 2, "used", {}),  # 23505: the key was used with amount 1 (409)
        ("active", 1, "a", {}),  # replays "a"
        ("active", 2, "a", {}),  # 409: "a" with other arguments
        ("active", 1, None, {"description": ""}),  # 22023: empty description (400)
        ("active", 3, None, {}),  # 200
    ]
    answers = _compare(world, 20, before, mix)
    assert [s for s, _ in answers] == [200, 200, 200, 400, 409, 200, 409, 400, 200], answers
    assert answers[4][1]["error"] == "idempotency_key_reused"
    assert answers[5][1]["replayed"] is True


def test_C4_a_key_retried_across_the_batch_boundary_charges_once(world: World) -> None:
    """Charged in a batch, retried alone (a single call), and the other way round."""
    orgs = _twin_orgs(world, 100)
    tokens = orgs["coalesced"]
    org = tokens["org"]
    app = _app(world, coalescing=True)
    alone = _request(tokens["active"], 5, "single-first", {})
    first = asyncio.run(_one_by_one(app, [alone]))[0]
    batch = [
        _request(tokens["active"], 1, None, {}),
        _request(tokens["active"], 4, "batch-first", {}),
        _request(tokens["active"], 5, "single-first", {}),  # the single call's key, in a batch
        _request(tokens["active"], 1, None, {}),
    ]
    got = asyncio.run(_coalesced(world, app, org, batch))
    assert [r.status_code for r in got] == [200] * 4
    assert got[2].json()["replayed"] is True
    assert got[2].json()["transaction_id"] == first.json()["transaction_id"]
    again = asyncio.run(_one_by_one(app, [batch[1]]))[0]  # the batch's key, alone
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["transaction_id"] == got[1].json()["transaction_id"]
    assert world.pool_balance(org) == 100 - 5 - 1 - 4 - 1
    rows = world.sql(
        "select idempotency_key, count(*) from public.credit_transactions t "
        "join public.organizations o on o.id = t.organization_id "
        "where o.clerk_org_id = %s and t.kind = 'deduction' group by 1 order by 1",
        (org,),
    )
    assert rows == [("batch-first", 1), ("single-first", 1), (None, 2)]
    assert world.consistency_problems() == []


def test_F2_backend_killed_mid_batch_answers_503_to_each_and_the_retry_charges_once(
    world: World,
) -> None:
    """pg_terminate_backend on the issuer's connection while its batch is in flight."""
    orgs = _twin_orgs(world, 100)
    tokens = orgs["coalesced"]
    org = tokens["org"]
    app = _app(world, coalescing=True)
    coalescer: Coalescer = app.state.coalescer
    reqs = [_request(tokens["active"], 1, f"f2-{i}", {}) for i in range(6)]

    async def kill_the_batch(holder: psycopg.Connection[Any]) -> None:
        # The batch will wait on one of its keys (after the first call committed).
        with _key_locked(world, org, tokens["active_user"], "f2-3"):
            holder.commit()
            await _wait_for(
                lambda: _waiting_on_lock(world, "deduct_credits_pooled_batch"),
                "the batch waiting on a key",
            )
            (pid,) = _waiting_on_lock(world, "deduct_credits_pooled_batch")
            world.sql("select pg_terminate_backend(%s)", (pid,))
            await _wait_for(lambda: coalescer.stats.unavailable == 1, "the 503s")

    got = asyncio.run(_coalesced(world, app, org, reqs, release=kill_the_batch))
    assert got[0].status_code == 200, (got[0].text, [r.status_code for r in got], coalescer.stats)
    for r in got[1:]:
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "database_unavailable"
        assert r.headers["retry-after"] == "1"
    assert world.pool_balance(org) == 99  # only the first: the batch wrote nothing
    # The clients retry with the same keys (now alone or batched, whichever): charged once.
    retried = asyncio.run(_one_by_one(app, reqs))
    assert [r.status_code for r in retried] == [200] * 6
    assert retried[0].json()["replayed"] is True
    assert [r.json()["replayed"] for r in retried[1:]] == [False] * 5
    again = asyncio.run(_one_by_one(app, reqs))
    assert all(r.json()["replayed"] for r in again)
    assert world.pool_balance(org) == 94
    assert world.consistency_problems() == []


@contextmanager
def _key_locked(world: World, org: str, user: str, key: str) -> Iterator[None]:
    """Hold the idempotency-key lock a deduction by ``user`` with ``key`` takes first
    (private.idempotent_replay's advisory lock), until the block ends."""
    with psycopg.connect(world.db_url) as conn:
        conn.execute(
            "select pg_advisory_xact_lock(hashtextextended("
            "'credit_transactions:deduction:' || o.id::text || ':' || u.id::text || ':' || %s, 0))"
            " from public.organizations o, public.users u"
            " where o.clerk_org_id = %s and u.clerk_user_id = %s",
            (key, org, user),
        )
        yield
        conn.rollback()


def test_usage_coalescing_setting_is_on_by_default_and_turns_off(world: World) -> None:
    env = issuer_env(world.db_url, world.clerk)
    assert load_settings(env).usage_coalescing is True
    assert load_settings({**env, "USAGE_COALESCING": "off"}).usage_coalescing is False
    assert load_settings({**env, "USAGE_COALESCING": "on"}).usage_coalescing is True
    with pytest.raises(ConfigError) as exc:
        load_settings({**env, "USAGE_COALESCING": "sometimes"})
    assert "USAGE_COALESCING" in str(exc.value)
    from support.world import make_world

    off = make_world(world.db_url, world.clerk, USAGE_COALESCING="off")
    try:
        assert off.client.app.state.coalescer is None  # type: ignore[attr-defined]
    finally:
        off.issuer.close()
        off.close()


def test_personal_tokens_are_never_queued(world: World) -> None:
    dave = world.user(personal=Decimal(3))
    token = world.extension_token(dave)
    app = _app(world, coalescing=True)
    coalescer: Coalescer = app.state.coalescer
    got = asyncio.run(_one_by_one(app, [_request(token, 1, None, {})]))
    assert got[0].status_code == 200 and got[0].json()["pool"] == "personal"
    assert coalescer.stats.singles == coalescer.stats.batches == 0


# -- a real `issuer serve --workers 2`, 64 clients ------------------------------------

AMOUNTS = (Decimal("0.25"), Decimal("0.5"), Decimal(1), Decimal("2.75"))


def test_C1_F2_64_clients_drain_one_pool_to_exactly_zero_through_two_workers_with_kills(
    world: World, fake_clerk: Any, tmp_path: Any
) -> None:
    """64 HTTP clients, mixed amounts, one org pool, `issuer serve --workers 2`.

    Each client spends 0.25 / 0.5 / 1 / 2.75 in turn, falls back to 0.25 once
    refused, and stops when 0.25 is refused; every request has its own
    Idempotency-Key and a 503 is retried with the same key. Meanwhile the
    backends running a batch are terminated (pg_terminate_backend). At the
    end the pool is exactly 0, the keys answered 200 are exactly the ledger's
    rows (once each) and their amounts sum to the pool, and the check is empty.
    """
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from issuer_dev.served import issuer_serve

    start = Decimal(400)
    org = world.org(pool=start)
    users = [world.user() for _ in range(16)]
    for u in users:
        world.seat(org, u)
    tokens = [world.extension_token(u, org) for u in users]
    env = issuer_env(world.db_url, fake_clerk)
    charged: dict[str, Decimal] = {}
    statuses: list[int] = []
    lock = threading.Lock()
    done = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        with psycopg.connect(world.db_url, autocommit=True) as conn:
            while not done.is_set() and len(kills) < 3:
                rows = conn.execute(
                    "select pg_terminate_backend(pid), pid from pg_stat_activity "
                    "where state = 'active' and query like %s and pid <> pg_backend_pid()",
                    ('%deduct_credits_pooled_batch"(%',),
                ).fetchall()
                kills.extend(pid for ok, pid in rows if ok)
                time.sleep(0.02 if not rows else 0.3)

    def client(i: int, base_url: str) -> None:
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        n = i
        with httpx.Client(base_url=base_url, timeout=60) as http:
            small = False
            while True:
                amount = AMOUNTS[0] if small else AMOUNTS[n % len(AMOUNTS)]
                n += 1
                key = f"drain-{uuid.uuid4().hex}"
                for _attempt in range(50):
                    r = http.post(
                        "/api/extension/usage",
                        json={"amount": str(amount), "description": "drain"},
                        headers={**headers, "Idempotency-Key": key},
                    )
                    with lock:
                        statuses.append(r.status_code)
                    if r.status_code != 503:
                        break
                    time.sleep(0.05)
                if r.status_code == 200:
                    assert r.json()["remaining"] >= 0
                    with lock:
                        assert key not in charged or charged[key] == amount
                        charged[key] = amount
                elif r.status_code == 402:
                    if small:
                        return
                    small = True
                else:
                    raise AssertionError(f"{r.status_code}: {r.text}")

    with issuer_serve(env, tmp_path, workers=2) as served:
        kill_thread = threading.Thread(target=killer)
        kill_thread.start()
        try:
            with ThreadPoolExecutor(max_workers=64) as pool:
                list(pool.map(lambda i: client(i, served.url), range(64)))
        finally:
            done.set()
            kill_thread.join()
    assert world.pool_balance(org) == 0
    assert sum(charged.values()) == start
    rows = world.sql(
        "select t.idempotency_key, -t.amount, t.created_at from public.credit_transactions t "
        "join public.organizations o on o.id = t.organization_id "
        "where o.clerk_org_id = %s and t.kind = 'deduction'",
        (org,),
    )
    assert sorted((k, Decimal(a)) for k, a, _ in rows) == sorted(charged.items())
    # Batching happened: rows of one batch share their transaction's now().
    assert len({c for _, _, c in rows}) < len(rows)
    assert kills, "no batch was caught in flight"
    assert 503 in statuses  # the killed batches' requests, retried with their keys
    assert world.consistency_problems() == []
