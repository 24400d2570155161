"""Reads that may be stale, from a read replica (``DATABASE_READ_URL``).

Only the analytics views of docs/analytics.md are read through here (the
``issuer credits usage`` report). Never the money path: deductions, grants,
refunds, token stores, attribution and the token page's listings all go
through :mod:`issuer.rpc` on ``DATABASE_URL`` (the primary); this module has no
way to call an RPC, and its connections are read-only
(``default_transaction_read_only=on``) on the replica *and* on the primary it
may fall back to, so a write sent through it fails instead of landing anywhere.

Before each read one statement on the replica connection measures
``pg_is_in_recovery()`` and the replay lag:

* 0 when the replica has replayed all the WAL it received and its WAL
  receiver is running (a replica whose receiver is gone cannot know how far
  behind it is, so it is not "0");
* otherwise the age of the last replayed transaction
  (``clock_timestamp() - pg_last_xact_replay_timestamp()``; unknown counts as
  infinite). This over-estimates on an idle primary, which is the safe side.

A replica that cannot be reached, that lags more than ``max_lag`` seconds
(``DATABASE_READ_MAX_LAG``, default 30), or whose query is cancelled by a
recovery conflict is not used: with ``DATABASE_READ_FALLBACK=primary`` (the
default) the same read runs on the primary, read-only; with ``refuse`` it
raises :class:`~issuer.errors.DatabaseUnavailable` (503, retryable). Every
result says which server answered, whether that server was in recovery when
it answered, and why the replica was skipped (docs/operations.md, "Read
replica").
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import psycopg
from psycopg.rows import dict_row

from issuer.errors import ConfigError, DatabaseUnavailable
from issuer.rpc import resolve_pooler, role_problem

log = logging.getLogger(__name__)

__all__ = ["ReadConfig", "ReadResult", "read"]

Fallback = Literal["primary", "refuse"]

#: One round trip on the replica connection: is it a replica, and how stale.
LAG_SQL = """
select
    pg_catalog.pg_is_in_recovery() as in_recovery,
    case
        when not pg_catalog.pg_is_in_recovery() then 0::float8
        when pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn()
            and exists (select from pg_catalog.pg_stat_wal_receiver) then 0::float8
        else coalesce(
            extract(epoch from pg_catalog.clock_timestamp()
                - pg_catalog.pg_last_xact_replay_timestamp())::float8,
            'infinity'::float8
        )
    end as lag_seconds
"""

#: SQLSTATE classes after which the read is retried on the primary (or refused):
#: connection (08), recovery conflict / serialization (40), resources (53),
#: shutdown or cancel (57), system (58).
_RETRY_ELSEWHERE = frozenset({"08", "40", "53", "57", "58"})


@dataclass(frozen=True)
class ReadConfig:
    """Where stale-tolerant reads go, and when the replica is not good enough."""

    primary_url: str
    read_url: str | None = None
    role: str | None = "service_role"
    pooler: str = "auto"
    """``DATABASE_POOLER``, resolved for each URL as :func:`issuer.rpc.resolve_pooler` does."""
    max_lag: float = 30.0
    fallback: Fallback = "primary"
    connect_timeout: int = 2
    statement_timeout: float = 120.0

    @classmethod
    def from_env(cls, primary_url: str, env: Mapping[str, str] | None = None) -> ReadConfig:
        """``DATABASE_READ_URL``, ``DATABASE_READ_MAX_LAG``, ``DATABASE_READ_FALLBACK``.

        The role is ``DATABASE_ROLE``'s, as for every other connection
        (default ``service_role``; empty: the login role). Empty values count
        as unset; a bad value raises :class:`ConfigError` naming the variable
        (never echoing a URL).
        """
        env = os.environ if env is None else env
        role = (env.get("DATABASE_ROLE", "service_role") or "").strip() or None
        pooler = (env.get("DATABASE_POOLER") or "").strip() or "auto"
        read_url = (env.get("DATABASE_READ_URL") or "").strip() or None
        if read_url is not None and not read_url.startswith(("postgres://", "postgresql://")):
            raise ConfigError(
                "DATABASE_READ_URL: must be a postgresql:// URL", variable="DATABASE_READ_URL"
            )
        raw_lag = (env.get("DATABASE_READ_MAX_LAG") or "").strip() or "30"
        try:
            max_lag = float(raw_lag)
        except ValueError:
            max_lag = -1.0
        if not math.isfinite(max_lag) or max_lag < 0:
            raise ConfigError(
                "DATABASE_READ_MAX_LAG: must be a number of seconds >= 0",
                variable="DATABASE_READ_MAX_LAG",
            )
        fallback = (env.get("DATABASE_READ_FALLBACK") or "").strip() or "primary"
        if fallback not in ("primary", "refuse"):
            raise ConfigError(
                "DATABASE_READ_FALLBACK: must be 'primary' or 'refuse'",
                variable="DATABASE_READ_FALLBACK",
            )
        return cls(
            primary_url=primary_url,
            read_url=read_url,
            role=role,
            pooler=pooler,
            max_lag=max_lag,
            fallback=cast(Fallback, fallback),
        )


@dataclass(frozen=True)
class ReadResult:
    rows: list[dict[str, Any]]
    served_by: Literal["replica", "primary"]
    """``replica``: the DATABASE_READ_URL server answered; ``primary``: DATABASE_URL."""
    in_recovery: bool
    """``pg_is_in_recovery()`` on the connection that ran the query."""
    lag_seconds: float | None
    """The replica's lag measured just before the query (None when it was not reached)."""
    fallback_reason: str | None = None
    """Why the replica was not used (None when it was)."""

    def summary(self) -> dict[str, Any]:
        lag = self.lag_seconds
        return {
            "served_by": self.served_by,
            "in_recovery": self.in_recovery,
            "lag_seconds": None if lag is None or not math.isfinite(lag) else round(lag, 3),
            "fallback_reason": self.fallback_reason,
        }


class _SkipReplica(Exception):
    def __init__(self, reason: str, lag: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lag = lag


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(config: ReadConfig, url: str) -> psycopg.Connection[dict[str, Any]]:
    """A read-only connection to ``url``, as rpc.py connects behind the same pooler.

    Direct (``none``): read-only, the role and the statement timeout in the
    startup packet. Behind a pooler nothing goes there (PgBouncer refuses
    ``options``; a pooler may drop it): the login role's own defaults give
    the role, which is checked, and :func:`_read_only` sets read-only and the
    timeout inside the transaction of each read.
    """
    pooler = resolve_pooler(url, config.pooler)
    options = []
    if pooler == "none":
        options.append("-c default_transaction_read_only=on")
        if config.role:
            options.append(f"-c role={config.role}")
        options.append(f"-c statement_timeout={int(config.statement_timeout * 1000)}")
    conn = psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=max(2, config.connect_timeout),
        options=" ".join(options),
        application_name="issuer-read",
        row_factory=dict_row,
        prepare_threshold=None,
    )
    if pooler != "none" and config.role:
        problem = role_problem(conn, config.role, pooler)
        if problem is not None:
            conn.close()
            raise psycopg.OperationalError(problem)
    return conn


@contextmanager
def _read_only(conn: psycopg.Connection[dict[str, Any]], config: ReadConfig) -> Iterator[None]:
    """One read-only transaction with the statement timeout, whatever the pooler."""
    with conn.transaction():
        conn.execute("set transaction read only")
        conn.execute(
            "select pg_catalog.set_config('statement_timeout', %s, true)",
            (str(int(config.statement_timeout * 1000)),),
        )
        yield


def _sqlstate_class(exc: psycopg.Error) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state[:2] if state else None


def _on_replica(config: ReadConfig, url: str, query: str, params: Any) -> ReadResult:
    try:
        conn = _connect(config, url)
    except psycopg.OperationalError as exc:
        raise _SkipReplica(f"replica unreachable: {_first_line(exc)}") from None
    with conn:
        try:
            with _read_only(conn, config):
                state = conn.execute(LAG_SQL).fetchone()
                assert state is not None
                lag = float(state["lag_seconds"])
                if lag > config.max_lag:
                    shown = "unknown" if math.isinf(lag) else f"{lag:.1f} s"
                    raise _SkipReplica(
                        f"replica lag {shown} over DATABASE_READ_MAX_LAG={config.max_lag:g} s",
                        lag,
                    )
                rows = conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) or (
                _sqlstate_class(exc) in _RETRY_ELSEWHERE
            ):
                raise _SkipReplica(f"replica failed: {_first_line(exc)}") from None
            raise
    return ReadResult(
        rows=rows, served_by="replica", in_recovery=bool(state["in_recovery"]), lag_seconds=lag
    )


def _on_primary(
    config: ReadConfig, query: str, params: Any, reason: str, lag: float | None
) -> ReadResult:
    try:
        conn = _connect(config, config.primary_url)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from None
    with conn:
        try:
            with _read_only(conn, config):
                in_recovery = conn.execute("select pg_catalog.pg_is_in_recovery() as r").fetchone()
                rows = conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) or (
                _sqlstate_class(exc) in _RETRY_ELSEWHERE
            ):
                raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from None
            raise
    return ReadResult(
        rows=rows,
        served_by="primary",
        in_recovery=bool(in_recovery and in_recovery["r"]),
        lag_seconds=lag,
        fallback_reason=reason,
    )


def read(config: ReadConfig, query: str, params: Any = None) -> ReadResult:
    """Run one read-only ``query``: on the replica when it is fresh enough, else as configured.

    Raises :class:`DatabaseUnavailable` when neither may answer; SQL errors of
    the query itself (a typo, a missing view) are raised as they are.
    """
    if config.read_url is None:
        return _on_primary(config, query, params, "no DATABASE_READ_URL", None)
    try:
        return _on_replica(config, config.read_url, query, params)
    except _SkipReplica as skip:
        if config.fallback == "refuse":
            log.warning("read replica not used, refusing (DATABASE_READ_FALLBACK=refuse): %s", skip)
            raise DatabaseUnavailable(f"read replica unavailable: {skip.reason}") from None
        log.warning("read replica not used, reading from the primary: %s", skip)
        return _on_primary(config, query, params, skip.reason, skip.lag)
