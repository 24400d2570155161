"""F1: Postgres restarted under a load of usage calls through a real `issuer serve`.

A few client threads spend credits through the HTTP API, each charge with its
own Idempotency-Key, while the test restarts the server with a fast shutdown,
with an immediate shutdown (crash recovery on start), and finally keeps it
down for a while. While the database is away the API answers 503
``database_unavailable`` with Retry-After (never a 500, never a 402: the pool
is full); the clients retry the same key; the issuer recovers on its own.
Afterwards every charge that got a 200 is in the ledger exactly once, with
the transaction id the client was given, and C7 holds.

The test owns its Postgres cluster (support.faults.own_cluster): it never
restarts a server given by DATABASE_URL.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from issuer_dev import localdb
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import Served, issuer_serve
from support import faults
from support.world import World, issuer_env, make_world

POOL = 1_000_000
CLIENTS = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[localdb.Cluster]:
    with faults.own_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def f1_world(cluster: localdb.Cluster, fake_clerk: FakeClerk) -> Iterator[World]:
    w = make_world(faults.migrated_database(cluster.url), fake_clerk)
    try:
        yield w
    finally:
        w.close()
        w.issuer.close()


@pytest.fixture(scope="module")
def served(
    f1_world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    env = issuer_env(f1_world.db_url, fake_clerk, DATABASE_POOL_SIZE="4")
    with issuer_serve(env, tmp_path_factory.mktemp("f1")) as s:
        yield s


def _first_success_after(answers: list[faults.Answer], t: float) -> float | None:
    ok = [a.ended for a in answers if a.status == 200 and a.started >= t]
    return min(ok) - t if ok else None


def test_F1_postgres_restarts_under_usage_load(
    cluster: localdb.Cluster, f1_world: World, served: Served
) -> None:
    w = f1_world
    org = w.org(pool=POOL, name="Restart Co")
    tokens = []
    for i in range(CLIENTS):
        user = w.user(personal=POOL if i == 0 else 0)
        if i == 0:
            tokens.append(w.extension_token(user))  # one personal token
        else:
            w.seat(org, user)
            tokens.append(w.extension_token(user, org))
    w.close()  # the arranging connection would not survive the restarts
    pid = served.process.pid

    stop = threading.Event()
    clients = [
        faults.UsageClient(served.url, token, f"f1c{i}", stop, backoff=0.1).start()
        for i, token in enumerate(tokens)
    ]
    back: dict[str, float] = {}
    health: list[httpx.Response] = []

    def probe_health() -> None:
        health.append(httpx.get(served.url + "/healthz", timeout=5))

    t0 = time.monotonic()
    try:
        time.sleep(1.0)
        back["restart fast"] = faults.restart(cluster, "fast")
        time.sleep(1.0)
        back["restart immediate"] = faults.restart(cluster, "immediate")
        time.sleep(1.0)
        back["down 1.5 s (fast)"] = faults.outage(cluster, "fast", 1.5, during=probe_health)
        time.sleep(1.5)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=40)
    elapsed = time.monotonic() - t0

    answers = [a for c in clients for a in c.answers]
    charged = {k: a for c in clients for k, a in c.charged.items()}
    statuses = Counter(a.status for a in answers)

    # While the database was away: 503 database_unavailable + Retry-After, nothing else.
    assert set(statuses) <= {200, 503}, [a for a in answers if a.status not in (200, 503)][:5]
    unavailable = [a for a in answers if a.status == 503]
    assert unavailable, "the outage should have produced 503s"
    assert {a.error for a in unavailable} == {"database_unavailable"}
    assert all(a.retry_after for a in unavailable)
    assert not [k for c in clients for k in c.unfinished], "a charge never got a final answer"
    # Failing fast, not hanging: a 503 comes within the pool's acquire budget.
    slowest_503 = max(a.ended - a.started for a in unavailable)
    assert slowest_503 < 6.0, slowest_503

    # Recovered on its own: same process, healthy, and charges succeed after each restart.
    assert served.process.poll() is None and served.process.pid == pid
    assert [(r.status_code, r.json()["error"]) for r in health] == [(503, "database_unavailable")]
    assert health[0].headers.get("retry-after")
    assert httpx.get(served.url + "/healthz", timeout=5).status_code == 200
    recovery = {name: _first_success_after(answers, t) for name, t in back.items()}
    assert all(r is not None for r in recovery.values()), recovery

    # Every 200 is in the ledger exactly once, with the id the client was given.
    rows = faults.ledger_rows(w.db_url, "f1c")
    keys = Counter(k for k, _, _ in rows)
    assert [k for k, n in keys.items() if n > 1] == []
    assert set(keys) == set(charged), "ledger keys differ from the charges that got 200"
    ids = {k: i for k, i, _ in rows}
    assert all(ids[k] == a.transaction_id for k, a in charged.items())
    for c in clients:  # retried charges that were answered twice agree on the id
        for a in c.answers:
            if a.status == 200:
                assert a.transaction_id == ids[a.key]
    assert faults.duplicate_keys(w.db_url) == []

    personal = sum(1 for k in charged if k.startswith("f1c0-"))
    org_charges = len(charged) - personal
    assert w.pool_balance(org) == Decimal(POOL - org_charges)
    assert w.consistency_problems() == []

    retried = sum(1 for k in charged if any(a.key == k and a.status == 503 for a in answers))
    log = served.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
    print(
        f"\nF1: {elapsed:.1f} s, {CLIENTS} clients, {len(answers)} requests: "
        f"{statuses[200]} x 200, {statuses[503]} x 503 (database_unavailable), 0 other; "
        f"{len(charged)} charges, {retried} of them retried after a 503 with the same key, "
        f"ledger rows {len(rows)} (each key once); slowest 503 {slowest_503:.2f} s; "
        f"recovery (first 200 after the server "
        f"accepted connections again): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in recovery.items() if v is not None)
    )


def test_clerk_away_fails_closed_over_http(
    f1_world: World, served: Served, fake_clerk: FakeClerk
) -> None:
    """The other dependency: Clerk's JWKS unreachable (cold cache) means 503, never a token."""
    w = f1_world
    org = w.org(pool=10)
    user = w.user()
    w.seat(org, user)
    session = {"Authorization": f"Bearer {fake_clerk.session_token(user, exp_in=600)}"}
    fake_clerk.fail_with(503, jwks=True)
    try:
        with httpx.Client(base_url=served.url, timeout=10) as http:
            for path in ("/api/extension-token/generate", "/api/dashboard-token/generate"):
                r = http.post(path, json={"clerk_org_id": org}, headers=session)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert r.json()["error"] == "clerk_unavailable"
                assert r.headers.get("retry-after")
                assert "token" not in r.json()
    finally:
        fake_clerk.fail_with(None)
    w.close()
