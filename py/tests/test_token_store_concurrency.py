"""Token stores under real concurrency (SECURITY.md O2, O5, O6).

Each racer is a thread with its own connection, acting as ``service_role``
(the only role that may call the RPCs), released together by a barrier.
The single-connection behaviour is specified in sql/tests/6*_*.sql.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import pytest

RACERS = 10
ROUNDS = 5
CLIENT = "vscode-extension"
REDIRECT = "vscode://softcodes.vscode/auth-callback"
# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

T = TypeVar("T")


def h(secret: str) -> str:
    """What the issuer stores: sha256 hex of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def service_connection(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("set role service_role")
    return conn


def call(conn: psycopg.Connection[tuple[Any, ...]], sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


def race(
    url: str, work: Callable[[psycopg.Connection[tuple[Any, ...]], int], T], n: int = RACERS
) -> list[T]:
    """Run work(conn, i) in n threads, each on its own connection, all released at once."""
    conns = [service_connection(url) for _ in range(n)]
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=30)
        return work(conns[i], i)

    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(run, range(n)))
    finally:
        for conn in conns:
            conn.close()


@pytest.fixture
def svc(db_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    conn = service_connection(db_url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def admin(db_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """The superuser, to inspect the tables that service_role cannot read."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def live_tokens(admin: psycopg.Connection[tuple[Any, ...]], family_id: Any) -> int:
    return int(
        call(
            admin,
            "select count(*) from refresh_tokens "
            "where family_id = %s and rotated_at is null and revoked_at is null",
            family_id,
        )
    )


def wait_until_blocked_or_done(
    admin: psycopg.Connection[tuple[Any, ...]], pid: int, done: threading.Event, timeout: float = 10
) -> None:
    """Until backend pid waits for a lock (or its call returned)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done.is_set():
        waiting = call(
            admin,
            "select count(*) from pg_stat_activity where pid = %s and wait_event_type = 'Lock'",
            pid,
        )
        if waiting:
            return
        time.sleep(0.01)


def in_background(
    conn: psycopg.Connection[tuple[Any, ...]], sql: str, *args: Any
) -> tuple[threading.Thread, threading.Event, list[Any]]:
    """Run one call on conn in a thread; the event is set when it returned."""
    done = threading.Event()
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call(conn, sql, *args))
        except psycopg.Error as exc:
            out.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, out


# O2 ---------------------------------------------------------------------------


def new_code(svc: psycopg.Connection[tuple[Any, ...]]) -> str:
    code_hash = h(fresh("code"))
    call(
        svc,
        "select create_oauth_code(%s, 'user_alice', %s, %s, %s, 'S256', 'org_acme')",
        code_hash,
        CLIENT,
        REDIRECT,
        CHALLENGE,
    )
    return code_hash


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_o2_ten_concurrent_redemptions_of_one_code_one_wins(
    db_url: str, svc: psycopg.Connection[tuple[Any, ...]], round_: int
) -> None:
    code_hash = new_code(svc)

    results = race(
        db_url,
        lambda conn, _i: call(
            conn,
            "select to_jsonb(r) from consume_oauth_code(%s, %s, %s, %s) as r",
            code_hash,
            CLIENT,
            REDIRECT,
            VERIFIER,
        ),
    )

    winners = [r for r in results if r["ok"]]
    assert len(winners) == 1, results
    assert winners[0]["clerk_user_id"] == "user_alice"
    assert winners[0]["clerk_org_id"] == "org_acme"
    losers = [r for r in results if not r["ok"]]
    assert {(r["error"], r["reason"]) for r in losers} == {("invalid_grant", "already_used")}

    # The losers were second redemptions: the refresh token the winner stores
    # now is born revoked.
    rt_hash = h(fresh("rt"))
    call(
        svc,
        "select issue_refresh_token(%s, 'user_alice', %s, now() + interval '30 days', 'org_acme', %s)",
        rt_hash,
        CLIENT,
        winners[0]["code_id"],
    )
    refreshed = call(
        svc,
        "select to_jsonb(r) from rotate_refresh_token(%s, %s, %s, now() + interval '30 days') as r",
        rt_hash,
        h(fresh("rt")),
        CLIENT,
    )
    assert refreshed["reason"] == "revoked"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_o2_replay_racing_the_first_issuance_leaves_no_live_refresh_token(
    db_url: str,
    svc: psycopg.Connection[tuple[Any, ...]],
    admin: psycopg.Connection[tuple[Any, ...]],
    round_: int,
) -> None:
    code_hash = new_code(svc)
    first = call(
        svc,
        "select to_jsonb(r) from consume_oauth_code(%s, %s, %s, %s) as r",
        code_hash,
        CLIENT,
        REDIRECT,
        VERIFIER,
    )
    assert first["ok"]
    rt_hash = h(fresh("rt"))

    def work(conn: psycopg.Connection[tuple[Any, ...]], i: int) -> str:
        if i == 0:  # the first redemption stores its refresh token ...
            call(
                conn,
                "select issue_refresh_token(%s, 'user_alice', %s, now() + interval '30 days', "
                "'org_acme', %s)",
                rt_hash,
                CLIENT,
                first["code_id"],
            )
            return "issued"
        # ... while the code is presented again.
        reply = call(
            conn,
            "select to_jsonb(r) from consume_oauth_code(%s, %s, %s, %s) as r",
            code_hash,
            CLIENT,
            REDIRECT,
            VERIFIER,
        )
        return str(reply["reason"])

    outcomes = race(db_url, work, n=4)

    assert set(outcomes[1:]) == {"already_used"}
    live = call(
        admin,
        "select count(*) from refresh_tokens where oauth_code_id = %s and revoked_at is null",
        first["code_id"],
    )
    assert live == 0, outcomes


def test_o2_replay_while_the_first_issuance_is_uncommitted_revokes_it(
    db_url: str,
    svc: psycopg.Connection[tuple[Any, ...]],
    admin: psycopg.Connection[tuple[Any, ...]],
) -> None:
    """The interleaving above, forced: the replay arrives while the refresh token
    of the first redemption is inserted but not yet committed."""
    code_hash = new_code(svc)
    first = call(
        svc,
        "select to_jsonb(r) from consume_oauth_code(%s, %s, %s, %s) as r",
        code_hash,
        CLIENT,
        REDIRECT,
        VERIFIER,
    )
    issuer = service_connection(db_url)
    replayer = service_connection(db_url)
    try:
        issuer.autocommit = False
        call(
            issuer,
            "select issue_refresh_token(%s, 'user_alice', %s, now() + interval '30 days', 'org_acme', %s)",
            h(fresh("rt")),
            CLIENT,
            first["code_id"],
        )
        thread, done, out = in_background(
            replayer,
            "select to_jsonb(r) from consume_oauth_code(%s, %s, %s, %s) as r",
            code_hash,
            CLIENT,
            REDIRECT,
            VERIFIER,
        )
        wait_until_blocked_or_done(admin, replayer.info.backend_pid, done)
        issuer.commit()
        thread.join(timeout=30)
    finally:
        issuer.close()
        replayer.close()

    assert out and out[0]["reason"] == "already_used", out
    live = call(
        admin,
        "select count(*) from refresh_tokens where oauth_code_id = %s and revoked_at is null",
        first["code_id"],
    )
    assert live == 0


# O6 (and O5 under concurrency) ------------------------------------------------------


def new_family(svc: psycopg.Connection[tuple[Any, ...]]) -> tuple[str, Any]:
    rt_hash = h(fresh("rt"))
    family = call(
        svc,
        "select issue_refresh_token(%s, 'user_alice', %s, now() + interval '30 days', 'org_acme')",
        rt_hash,
        CLIENT,
    )
    return rt_hash, family


def concurrent_rotations(db_url: str, old_hash: str, grace: int) -> list[dict[str, Any]]:
    new_hashes = [h(fresh("rt")) for _ in range(RACERS)]
    return race(
        db_url,
        lambda conn, i: call(
            conn,
            "select to_jsonb(r) from rotate_refresh_token(%s, %s, %s, now() + interval '30 days', %s) as r",
            old_hash,
            new_hashes[i],
            CLIENT,
            grace,
        ),
    )


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_o6_ten_concurrent_rotations_within_grace_one_live_token(
    db_url: str,
    svc: psycopg.Connection[tuple[Any, ...]],
    admin: psycopg.Connection[tuple[Any, ...]],
    round_: int,
) -> None:
    old_hash, family = new_family(svc)

    results = concurrent_rotations(db_url, old_hash, grace=10)

    assert sum(1 for r in results if r["ok"]) == 1, results
    assert all(r["family_id"] == str(family) for r in results if r["ok"])
    assert [{k: v for k, v in r.items() if v is not None} for r in results if not r["ok"]] == [
        {"ok": False, "error": "invalid_grant", "reason": "reused", "family_revoked": False}
    ] * (RACERS - 1)
    assert live_tokens(admin, family) == 1
    assert call(admin, "select count(*) from refresh_tokens where family_id = %s", family) == 2


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_o6_ten_concurrent_rotations_without_grace_revoke_the_family(
    db_url: str,
    svc: psycopg.Connection[tuple[Any, ...]],
    admin: psycopg.Connection[tuple[Any, ...]],
    round_: int,
) -> None:
    old_hash, family = new_family(svc)

    results = concurrent_rotations(db_url, old_hash, grace=0)

    # One rotation wins; the next one is reuse outside the (empty) grace
    # window and revokes the family, the winner's new token included (O5);
    # the rest find the token revoked.
    assert sum(1 for r in results if r["ok"]) == 1, results
    losers = [r for r in results if not r["ok"]]
    assert {r["reason"] for r in losers} <= {"reused", "revoked"}, losers
    assert any(r.get("family_revoked") for r in losers), losers
    assert live_tokens(admin, family) == 0


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_o5_reuse_racing_a_rotation_of_the_newest_token_revokes_everything(
    db_url: str,
    svc: psycopg.Connection[tuple[Any, ...]],
    admin: psycopg.Connection[tuple[Any, ...]],
    round_: int,
) -> None:
    first_hash, family = new_family(svc)
    newest_hash = h(fresh("rt"))
    assert call(
        svc,
        "select to_jsonb(r) from rotate_refresh_token(%s, %s, %s, now() + interval '30 days') as r",
        first_hash,
        newest_hash,
        CLIENT,
    )["ok"]

    def work(conn: psycopg.Connection[tuple[Any, ...]], i: int) -> dict[str, Any]:
        if i == 0:  # the legitimate client rotates the newest token ...
            old, new = newest_hash, h(fresh("rt"))
        else:  # ... while a thief replays the first one.
            old, new = first_hash, h(fresh("rt"))
        reply: dict[str, Any] = call(
            conn,
            "select to_jsonb(r) from rotate_refresh_token(%s, %s, %s, now() + interval '30 days') as r",
            old,
            new,
            CLIENT,
        )
        return reply

    race(db_url, work, n=4)

    assert live_tokens(admin, family) == 0


def test_o5_reuse_while_a_rotation_is_uncommitted_revokes_its_new_token(
    db_url: str,
    svc: psycopg.Connection[tuple[Any, ...]],
    admin: psycopg.Connection[tuple[Any, ...]],
) -> None:
    """The interleaving above, forced: the thief's replay arrives while the
    legitimate rotation has inserted the new token but not committed it."""
    first_hash, family = new_family(svc)
    newest_hash = h(fresh("rt"))
    rotate = (
        "select to_jsonb(r) from rotate_refresh_token(%s, %s, %s, now() + interval '30 days') as r"
    )
    assert call(svc, rotate, first_hash, newest_hash, CLIENT)["ok"]
    legit = service_connection(db_url)
    thief = service_connection(db_url)
    try:
        legit.autocommit = False
        assert call(legit, rotate, newest_hash, h(fresh("rt")), CLIENT)["ok"]
        thread, done, out = in_background(thief, rotate, first_hash, h(fresh("rt")), CLIENT)
        wait_until_blocked_or_done(admin, thief.info.backend_pid, done)
        legit.commit()
        thread.join(timeout=30)
    finally:
        legit.close()
        thief.close()

    assert out and out[0]["reason"] == "reused" and out[0]["family_revoked"], out
    assert live_tokens(admin, family) == 0


# Extension tokens -------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_concurrent_rotations_of_one_extension_token_one_wins(
    db_url: str,
    svc: psycopg.Connection[tuple[Any, ...]],
    admin: psycopg.Connection[tuple[Any, ...]],
    round_: int,
) -> None:
    user = fresh("user")
    old_hash = h(fresh("ext"))
    old_id = call(
        svc,
        "select create_extension_token(%s, %s, 'Laptop', now() + interval '90 days')",
        user,
        old_hash,
    )
    new_hashes = [h(fresh("ext")) for _ in range(RACERS)]

    results = race(
        db_url,
        lambda conn, i: call(
            conn,
            "select to_jsonb(r) from rotate_extension_token(%s, %s, now() + interval '90 days') as r",
            old_hash,
            new_hashes[i],
        ),
    )

    winners = [r for r in results if r["ok"]]
    assert len(winners) == 1, results
    assert {r["reason"] for r in results if not r["ok"]} == {"revoked"}, results
    assert winners[0]["replaced_id"] == str(old_id)
    listed = call(svc, "select jsonb_agg(to_jsonb(t)) from list_extension_tokens(%s) as t", user)
    live = [t for t in listed if t["revoked_at"] is None]
    assert [t["id"] for t in live] == [winners[0]["id"]]
    assert call(
        admin, "select replaced_by from extension_tokens where id = %s", old_id
    ) == uuid.UUID(winners[0]["id"])
    assert (
        call(svc, "select to_jsonb(r) from validate_extension_token(%s) as r", old_hash)["reason"]
        == "revoked"
    )


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_R4_ten_concurrent_polls_of_an_approved_device_code_one_wins(
    db_url: str, svc: psycopg.Connection[tuple[Any, ...]], round_: int
) -> None:
    device_hash, user_hash = h(fresh("dc")), h(fresh("uc"))
    call(svc, "select create_device_code(%s, %s, %s)", device_hash, user_hash, CLIENT)
    decided = call(
        svc,
        "select to_jsonb(r) from decide_device_code(%s, 'user_alice', true, 'org_acme') as r",
        user_hash,
    )
    assert decided["ok"] is True, decided

    results = race(
        db_url,
        lambda conn, _i: call(
            conn, "select to_jsonb(r) from poll_device_code(%s, %s) as r", device_hash, CLIENT
        ),
    )

    winners = [r for r in results if r["ok"]]
    assert len(winners) == 1, results
    assert (winners[0]["clerk_user_id"], winners[0]["clerk_org_id"]) == ("user_alice", "org_acme")
    losers = [r for r in results if not r["ok"]]
    assert {(r["error"], r["reason"]) for r in losers} == {("invalid_grant", "already_used")}


def test_R4_concurrent_wrong_guesses_of_one_user_are_all_counted(
    db_url: str, svc: psycopg.Connection[tuple[Any, ...]]
) -> None:
    """The guess counter is one row per user, updated under its row lock: no lost updates."""
    user = fresh("user_guesser")
    results = race(
        db_url,
        lambda conn, _i: call(
            conn,
            "select to_jsonb(r) from decide_device_code(%s, %s, true) as r",
            h(fresh("guess")),
            user,
        ),
        n=12,
    )
    reasons = sorted(r["reason"] for r in results)
    assert reasons == ["rate_limited"] * 2 + ["unknown_code"] * 10, reasons
