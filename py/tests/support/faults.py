"""Helpers for the fault tests (SECURITY.md F1-F4): a cluster we may restart,
HTTP clients that retry like real ones, ledger checks, backend killers.

Everything here is bounded: every wait has a deadline, every HTTP call a
timeout, so a regression shows up as a failed assertion, never as a hang.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from issuer_dev import localdb
from support import db as testdb

#: The fast test settings, but a commit is answered only after its WAL is
#: written: a crashed or killed server loses nothing it has confirmed (fsync
#: stays off: only an operating-system crash could lose data, not tested here).
SAFE_COMMIT: dict[str, str] = {**localdb.TEST_SETTINGS, "synchronous_commit": "on"}

#: Statuses a usage call may ever answer while faults are injected; anything
#: else (500, a 402 while the pool is full, a 401 for a valid token) is a bug.
RETRYABLE = 503


# -- a cluster this test owns ----------------------------------------------------


@contextmanager
def own_cluster(settings: dict[str, str] | None = None) -> Iterator[localdb.Cluster]:
    """A throwaway cluster of local binaries that the test may stop and restart.

    ``DATABASE_URL`` is deliberately ignored: a test must not restart a server
    it did not start. Without local binaries the test fails and says why.

    The default settings keep ``synchronous_commit=on`` (:data:`SAFE_COMMIT`):
    with the test clusters' ``synchronous_commit=off`` a commit is answered
    before its WAL is written, and an immediate shutdown loses the last
    answered charges (F1 saw exactly that: 200s missing from the ledger).
    """
    if localdb.find_postgres_bindir() is None:
        pytest.fail(
            "this fault test stops and restarts Postgres, so it needs a server it owns: "
            "install Postgres binaries (Debian: apt-get install postgresql-15). "
            "A server given by DATABASE_URL cannot be restarted by a test."
        )
    server = localdb.start_postgres(use_env=False, settings=dict(settings or SAFE_COMMIT))
    if not isinstance(server, localdb.Cluster):  # pragma: no cover - binaries exist
        server.stop()
        pytest.fail(f"expected a local cluster, got {server.kind}")
    try:
        yield server
    finally:
        server.stop()


def migrated_database(server_url: str) -> str:
    """A database with the bootstrap, every migration and the test helpers; its URL."""
    name = testdb.build_template(server_url)
    return localdb.with_database(server_url, name)


def outage(
    cluster: localdb.Cluster,
    mode: str,
    seconds: float,
    during: Callable[[], None] | None = None,
) -> float:
    """Stop the server (``fast`` or ``immediate``), keep it down, start it again.

    ``during`` runs while it is down (after half the time). Returns the
    monotonic time at which the server accepts connections again.
    """
    cluster.persistent = True  # stop() must keep the data directory
    try:
        cluster.stop(mode)
    finally:
        cluster.persistent = False
    time.sleep(seconds / 2)
    try:
        if during is not None:
            during()
    finally:
        time.sleep(seconds / 2)
        cluster.start()
    return time.monotonic()


def restart(cluster: localdb.Cluster, mode: str) -> float:
    """``pg_ctl stop -m mode`` then start; returns when it accepts connections."""
    cluster.restart(mode)
    return time.monotonic()


# -- backends --------------------------------------------------------------------


def terminate_backends(admin_url: str, application_name: str, states: tuple[str, ...]) -> int:
    """pg_terminate_backend every backend of ``application_name`` in one of ``states``.

    Waits (up to 5 s each) until the backends are gone, so a connection
    terminated while idle is already closed when this returns.
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) filter (where pg_terminate_backend(pid, 5000)) "
            "from pg_stat_activity "
            "where application_name = %s and state = any(%s) and pid <> pg_backend_pid()",
            (application_name, list(states)),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for_backends(
    admin_url: str, application_name: str, n: int, *, wait_event_type: str, timeout: float = 10
) -> None:
    """Wait until ``n`` backends of ``application_name`` wait on ``wait_event_type``."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "select count(*) from pg_stat_activity "
                "where application_name = %s and wait_event_type = %s",
                (application_name, wait_event_type),
            ).fetchone()
            if row and row[0] >= n:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {row[0] if row else 0} of {n} backends waiting on {wait_event_type}"
                )
            time.sleep(0.01)


# -- the ledger ------------------------------------------------------------------


def ledger_rows(db_url: str, key_prefix: str) -> list[tuple[str, str, Decimal]]:
    """(idempotency_key, transaction id, amount) of every ledger row whose key has the prefix."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select idempotency_key, id::text, amount from public.credit_transactions "
            "where idempotency_key like %s order by idempotency_key",
            (key_prefix + "%",),
        ).fetchall()
    return [(str(k), str(i), Decimal(a)) for k, i, a in rows]


def duplicate_keys(db_url: str) -> list[tuple[Any, ...]]:
    """Idempotency keys that appear more than once for the same pool owner (must be none)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "select pool, coalesce(organization_id, user_id), idempotency_key, count(*) "
            "from public.credit_transactions where idempotency_key is not null "
            "group by 1, 2, 3 having count(*) > 1"
        ).fetchall()


def consistency_problems(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("select * from public.credit_consistency_check()").fetchall()


# -- HTTP clients that behave like real ones -------------------------------------


@dataclass
class Answer:
    """One HTTP exchange as a client saw it."""

    key: str
    status: int  # 0: no HTTP answer (timeout, connection error)
    error: str | None
    started: float
    ended: float
    transaction_id: str | None = None
    replayed: bool | None = None
    remaining: float | None = None
    retry_after: str | None = None
    detail: str = ""


@dataclass
class UsageClient:
    """A thread spending credits with a bearer token, one Idempotency-Key per charge.

    On 503 it waits ``backoff`` seconds and repeats the SAME key until it gets a
    final answer (the contract of the API for retryable errors). It stops
    starting new charges when ``stop`` is set, or after its first 402 when
    ``until_402``, but always finishes the charge it started (bounded by
    ``give_up_after`` seconds).
    """

    base_url: str
    token: str
    name: str
    stop: threading.Event
    amount: int | float | str = 1
    backoff: float = 0.1
    until_402: bool = False
    give_up_after: float = 30.0
    timeout: float = 10.0
    answers: list[Answer] = field(default_factory=list)
    charged: dict[str, Answer] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> UsageClient:
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"client {self.name} did not finish in {timeout}s"

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=headers) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                key = f"{self.name}-{n}-{uuid.uuid4().hex[:8]}"
                final = self.charge(http, key)
                if final is None:
                    self.unfinished.append(key)
                    return
                if final.status == 402 and self.until_402:
                    return

    def charge(self, http: httpx.Client, key: str) -> Answer | None:
        """Send one charge until it has a final (non-503) answer; None if it never got one."""
        deadline = time.monotonic() + self.give_up_after
        while time.monotonic() < deadline:
            answer = self.send(http, key)
            self.answers.append(answer)
            if answer.status in (RETRYABLE, 0):  # 0: no answer at all, equally ambiguous
                time.sleep(self.backoff)
                continue
            if answer.status == 200:
                self.charged[key] = answer
            return answer
        return None

    def send(self, http: httpx.Client, key: str) -> Answer:
        started = time.monotonic()
        try:
            r = http.post(
                "/api/extension/usage",
                json={"amount": self.amount, "description": "fault test"},
                headers={"Idempotency-Key": key},
            )
        except httpx.HTTPError as exc:
            return Answer(key, 0, type(exc).__name__, started, time.monotonic(), detail=str(exc))
        ended = time.monotonic()
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return Answer(
            key,
            r.status_code,
            body.get("error"),
            started,
            ended,
            transaction_id=body.get("transaction_id"),
            replayed=body.get("replayed"),
            remaining=body.get("remaining"),
            retry_after=r.headers.get("retry-after"),
            detail=r.text[:300] if r.status_code >= 400 else "",
        )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]
