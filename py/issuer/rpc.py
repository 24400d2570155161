"""The only module that talks to Postgres: the database's RPCs, typed.

One interface (:class:`Rpc`), two backends chosen by configuration:

* :class:`PsycopgRpc`: a direct connection pool (``DATABASE_URL``). Each RPC
  is ONE statement, one round trip, no client-side transaction. Connections
  start as ``service_role`` (``-c role=...`` in the startup packet, so no extra
  statement) because that is the role the RPCs are granted to. Behind a
  pooler (``DATABASE_POOLER``, see :func:`resolve_pooler`) nothing is sent at
  startup and nothing is kept in the session: the login role's own default
  (``alter role ... set role service_role``) makes it ``service_role``, and
  each new connection checks the role it really runs as (:func:`role_problem`).
* :class:`PostgrestRpc`: supabase-py over PostgREST (``SUPABASE_URL`` +
  ``SUPABASE_SERVICE_ROLE_KEY``).

Business rules are not here: Postgres decides, this module asks. The typed
methods (one per RPC, keyword arguments named as in SQL, frozen dataclasses as
results) are generated from the catalog into :mod:`issuer.rpc_generated`
(``make gen``); :class:`Rpc` inherits them and runs them on either backend,
both of which answer JSON that :mod:`issuer.rpc_decode` turns into typed values.
A database that cannot be reached raises
:class:`~issuer.errors.DatabaseUnavailable` (HTTP 503, retryable); bad input
that the database refuses (SQLSTATE 22023 and friends) raises :class:`RpcError`
with the SQLSTATE and the database's message.
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from issuer.errors import BadRequest, ConfigError, DatabaseUnavailable
from issuer.rpc_decode import to_param
from issuer.rpc_generated import RPC_SHAPES, CreditResult, RpcMethods

log = logging.getLogger(__name__)

# psycopg_pool logs each failed reconnection attempt as a warning: several lines
# a second while the database is away. PsycopgRpc logs the transitions itself
# ("database unavailable" / "available again"); a deployer who configured the
# pool's logger keeps their level.
if logging.getLogger("psycopg.pool").level == logging.NOTSET:
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

__all__ = [
    "BatchDeduction",
    "CreditResult",
    "PostgrestRpc",
    "PsycopgRpc",
    "Rpc",
    "RpcConflict",
    "RpcError",
    "RpcNotFound",
    "make_rpc",
    "resolve_pooler",
    "verify_database_role",
]


class RpcError(BadRequest):
    """The database refused the call (bad input, conflicting idempotency key ...)."""

    code = "invalid_request"
    status = 400

    def __init__(self, sqlstate: str | None, message: str) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)


class RpcConflict(RpcError):
    """SQLSTATE 23505 from an RPC: e.g. an idempotency key reused with other arguments."""

    code = "conflict"
    status = 409

    def __init__(self, sqlstate: str | None, message: str) -> None:
        super().__init__(sqlstate, message)
        if "idempotency" in message:
            self.code = "idempotency_key_reused"  # type: ignore[misc]


class RpcNotFound(RpcError):
    """SQLSTATE P0002 from an RPC: the named row does not exist (e.g. no such seat)."""

    code = "not_found"
    status = 404


class RpcBug(RuntimeError):
    """The call itself is wrong (undefined function, privilege, syntax): a bug, HTTP 500."""


def rpc_error(sqlstate: str | None, message: str) -> Exception:
    """Input the database refused is the caller's error; anything else is ours."""
    if sqlstate == "23505":
        return RpcConflict(sqlstate, message)
    if sqlstate == "P0002":
        return RpcNotFound(sqlstate, message)
    if sqlstate and (sqlstate[:2] in {"22", "23", "54"} or sqlstate == "P0001"):
        return RpcError(sqlstate, message)
    return RpcBug(f"{sqlstate}: {message}")


@dataclass(frozen=True, slots=True)
class BatchDeduction:
    """One element of ``deduct_credits_pooled_batch``'s ``p_requests``."""

    clerk_user_id: str
    amount: Decimal
    description: str
    idempotency_key: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The element as JSON text, the amount an exact JSON number (never a float)."""
        if not self.amount.is_finite():
            raise BadRequest("amount must be a finite number")
        parts = [
            f'"clerk_user_id":{json.dumps(self.clerk_user_id)}',
            f'"amount":{self.amount}',  # str(Decimal) is a JSON number when finite
            f'"description":{json.dumps(self.description)}',
            f'"context":{json.dumps(self.context, default=_jsonable_or_fail)}',
        ]
        if self.idempotency_key is not None:
            parts.append(f'"idempotency_key":{json.dumps(self.idempotency_key)}')
        return "{" + ",".join(parts) + "}"


def _jsonable_or_fail(value: Any) -> Any:
    if isinstance(value, Decimal | UUID | datetime):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


class Backend(Protocol):
    """Runs one RPC; the answer as JSON (a dict for a row, a list for a set)."""

    def call(
        self, fn: str, params: dict[str, Any], *, composite: bool = False, setof: bool = False
    ) -> Any: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class Rpc(RpcMethods):
    """The database contract (ARCHITECTURE.md), typed: one method per RPC.

    The methods are generated from the catalog (:mod:`issuer.rpc_generated`,
    ``make gen``): keyword arguments named as in SQL (``p_...``), results as
    frozen dataclasses. This class only runs them on a backend.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def invoke(
        self,
        fn: str,
        params: dict[str, Any],
        *,
        shape: Literal["row", "scalar"],
        setof: bool,
    ) -> Any:
        clean = {k: to_param(v) for k, v in params.items()}
        if setof:
            return self.backend.call(fn, clean, setof=True)
        # (A backend written before set-returning RPCs need not know ``setof``.)
        return self.backend.call(fn, clean, composite=shape == "row")

    def ping(self) -> bool:
        return self.backend.ping()

    def close(self) -> None:
        self.backend.close()

    @property
    def supports_batch(self) -> bool:
        """Whether :meth:`deduct_batch` can be called (the psycopg backend).

        PostgREST would carry ``p_requests`` through a JSON encoder that has no
        exact decimals; callers keep single calls there.
        """
        return isinstance(self.backend, PsycopgRpc)

    def deduct_batch(self, clerk_org_id: str, requests: list[BatchDeduction]) -> list[CreditResult]:
        """``deduct_credits_pooled_batch``: one result per element, in order (issue 17).

        The generated :meth:`deduct_credits_pooled_batch` with the elements
        sent as exact JSON text (amounts never pass through a float). One
        statement, one transaction: when it returns, every element's result is
        committed. Bad input in any element refuses the whole batch
        (:class:`RpcError`, nothing written).
        """
        if not isinstance(self.backend, PsycopgRpc):
            raise RpcBug("deduct_credits_pooled_batch needs the psycopg backend")
        text = "[" + ",".join(r.to_json() for r in requests) + "]"
        rows = self.backend.call(
            "deduct_credits_pooled_batch",
            {"p_clerk_org_id": clerk_org_id, "p_requests": Jsonb(text, dumps=_raw_json)},
            setof=True,
        )
        if not isinstance(rows, list) or len(rows) != len(requests):
            raise RpcBug(f"deduct_credits_pooled_batch: {rows!r} for {len(requests)} requests")
        return [CreditResult.from_json(row) for row in rows]

    def call(self, fn: str, **params: Any) -> Any:
        """Any RPC by name, untyped (named ``p_`` arguments): prefer the typed methods."""
        shape, setof = RPC_SHAPES.get(fn, ("scalar", False))
        return self.invoke(fn, params, shape=shape, setof=setof)


# -- poolers (issue 16 P1) -------------------------------------------------------

Pooler = Literal["none", "session", "transaction"]

#: Supavisor's transaction-mode port on Supabase (the "Transaction pooler"
#: connection string); the session-mode pooler and direct connections use 5432.
SUPAVISOR_TRANSACTION_PORT = 6543


def resolve_pooler(url: str, setting: str = "auto") -> Pooler:
    """What sits between the issuer and Postgres: ``DATABASE_POOLER``, or guessed.

    ``auto`` (the default) means ``transaction`` on port 6543 (Supabase's
    transaction-mode pooler) and ``none`` otherwise; any other pooler must be
    declared. What changes (docs/operations.md, "Behind a pooler"):

    * ``none``: the role and ``statement_timeout`` go in the startup packet
      (``-c role=...``), and statements are prepared on first use.
    * ``session``: nothing in the startup packet (PgBouncer refuses
      ``options``; a pooler may drop it); statements are still prepared, the
      server connection being the client's for its whole life.
    * ``transaction``: nothing in the startup packet and no prepared
      statements (``prepare_threshold=None``): two statements of one client
      connection may run on two server connections.
    """
    if setting in ("none", "session", "transaction"):
        return setting  # type: ignore[return-value]
    if setting != "auto":
        raise ConfigError(
            "DATABASE_POOLER: must be auto, none, session or transaction",
            variable="DATABASE_POOLER",
        )
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None
    return "transaction" if port == SUPAVISOR_TRANSACTION_PORT else "none"


def _connect_kwargs(
    role: str | None, statement_timeout: float | None, pooler: Pooler
) -> dict[str, Any]:
    """libpq/psycopg connection parameters for ``pooler``."""
    options: list[str] = []
    if pooler == "none":
        # Startup options only with a role (DATABASE_ROLE empty: the login role).
        if role:
            options.append(f"-c role={role}")
        if role and statement_timeout:
            options.append(f"-c statement_timeout={int(statement_timeout * 1000)}")
    return {
        "autocommit": True,
        "options": " ".join(options),
        # Prepared on first use on a connection of its own (one round trip a
        # call afterwards); never through a transaction pooler.
        "prepare_threshold": None if pooler == "transaction" else 0,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


_ROLE_QUERY = b"select current_user::text, session_user::text"


def role_problem(conn: psycopg.Connection[Any], role: str, pooler: Pooler) -> str | None:
    """Why this connection must not be used (it runs as another role), or None.

    One statement, on a new connection only. A pooler that drops the startup
    option ``-c role=`` would otherwise leave the issuer running as its login
    role, a superuser on a local server (SECURITY.md: fail closed).
    """
    row = conn.cursor(row_factory=tuple_row).execute(_ROLE_QUERY, prepare=False).fetchone()
    current, session = (row[0], row[1]) if row else ("?", "?")
    if current == role:
        return None
    if pooler == "none":
        how = (
            f"the startup option -c role={role} was ignored or dropped (a pooler in "
            "front of the server?). Behind a pooler set DATABASE_POOLER=transaction "
            f"(or session) and log in as a role that becomes {role} by itself "
            f"(create role <login> ... in role {role}; alter role <login> set role {role})"
        )
    else:
        how = (
            f"behind a pooler (DATABASE_POOLER={pooler}) the issuer sends no startup "
            f"options, so log in as a role that becomes {role} by itself "
            f"(create role <login> ... in role {role}; alter role <login> set role {role})"
        )
    return (
        f"the database connections run as {current!r} (login role {session!r}), "
        f"not DATABASE_ROLE {role!r}: {how}; see docs/operations.md, "
        '"Behind a pooler". Refusing to use them.'
    )


def verify_database_role(
    url: str,
    role: str | None,
    *,
    pooler: str = "auto",
    connect_timeout: float = 3.0,
) -> None:
    """At start-up: raise :class:`ConfigError` when the connections are not ``role``.

    A database that cannot be reached now is not a reason to refuse to start
    (the pool recovers when it comes back, and checks each new connection).
    """
    if not role:
        return
    mode = resolve_pooler(url, pooler)
    kwargs = _connect_kwargs(role, None, mode)
    try:
        with psycopg.connect(url, connect_timeout=max(2, int(connect_timeout)), **kwargs) as conn:
            problem = role_problem(conn, role, mode)
    except psycopg.Error as exc:
        if "unsupported startup parameter" in str(exc):  # PgBouncer refusing -c role=
            raise ConfigError(
                "DATABASE_URL: a pooler refused the startup option -c role= "
                f"(unsupported startup parameter): set DATABASE_POOLER=transaction "
                f"(or session) and log in as a role that becomes {role} by itself; "
                'see docs/operations.md, "Behind a pooler"',
                variable="DATABASE_POOLER",
            ) from None
        log.warning("could not check the database role at start-up: %s", type(exc).__name__)
        return
    if problem:
        raise ConfigError(problem, variable="DATABASE_ROLE")


# -- psycopg backend -------------------------------------------------------------


# Money stays exact: JSON numbers from jsonb become Decimal, never float. One
# decoder for every call (json.loads with a keyword builds a new one each time).
_JSON_DECODER = json.JSONDecoder(parse_float=Decimal)


def _raw_json(text: str) -> str:
    """``Jsonb(text, dumps=_raw_json)``: text that is already JSON goes as it is."""
    return text


def _loads(data: str | bytes) -> Any:
    # As json.loads(bytes) decodes jsonb text (UTF-8), minus the encoding sniffing.
    text = data if isinstance(data, str) else data.decode("utf-8", "surrogatepass")
    return _JSON_DECODER.decode(text)


@dataclass(slots=True)
class _Statement:
    """A composed statement and its bytes, rendered once per client encoding.

    psycopg renders a ``sql.Composed`` (escaping every identifier through
    libpq) on every ``execute``; for an RPC statement that was about a third of
    the Python time of the call. The text only depends on the statement and the
    connection's encoding, so it is rendered with the first connection of each
    encoding and reused. Two threads may render the same text at once; both
    store the same bytes.
    """

    composed: sql.Composable
    rendered: dict[str, bytes] = field(default_factory=dict)

    def for_connection(self, conn: psycopg.Connection[Any]) -> bytes:
        encoding = conn.info.encoding
        query = self.rendered.get(encoding)
        if query is None:
            query = self.rendered[encoding] = self.composed.as_bytes(conn)
        return query


class PsycopgRpc:
    """A direct connection pool. One statement per RPC; no client transaction.

    Faults (SECURITY.md F1, F2), all ending in :class:`DatabaseUnavailable`
    (HTTP 503 ``database_unavailable`` with ``Retry-After``), never a 500:

    * **Dead pooled connections** (server restarted, backend terminated) are
      found before a statement is sent, without a round trip: an idle
      connection whose socket is readable has been told something by the
      server (a FATAL "terminating connection", or EOF); only then is it
      probed with an empty query, and discarded if dead. The call takes the
      next connection. A statement is sent only on a connection that looked
      alive, so a lost answer (the server died after the commit) is the only
      ambiguous case, and an idempotency key makes its retry safe.
    * **The server is away**: a connection attempt refused or timed out
      (``connect_timeout``) gives up at once (``reconnect_timeout=0``) and
      marks the database *unavailable*. While it is, calls wait at most
      ``unavailable_timeout`` (not ``acquire_timeout``) for a connection, so
      requests fail fast instead of piling up, and the health thread probes
      every ``probe_interval`` seconds instead of ``check_interval``. The first
      call that succeeds marks it available again: recovery needs no restart.
    * **A statement that hangs** is cancelled by the server after
      ``statement_timeout`` seconds (SQLSTATE 57014, also a 503; sent with the
      role in the startup packet, so not when ``role`` is empty); TCP
      keepalives notice a peer that vanished.
    * SQLSTATE classes 08 (connection), 40 (serialization, deadlock), 53
      (resources), 55 (lock not available), 57 (shutdown, cancel), 58 and
      every other ``OperationalError`` mean "unavailable, retry" (503);
      classes 22, 23, 54 (too complex) and ``P0001`` are the caller's bad
      input (:class:`RpcError`, 400; 23505 is 409), ``P0002`` is 404, and so are
      values psycopg cannot send (a NUL byte in text, a lone surrogate);
      anything else is a bug (:class:`RpcBug`, 500).
    """

    def __init__(
        self,
        url: str,
        *,
        role: str | None = "service_role",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 3.0,
        acquire_timeout: float = 5.0,
        unavailable_timeout: float = 0.5,
        check_interval: float = 5.0,
        probe_interval: float = 0.5,
        statement_timeout: float | None = 15.0,
        open_wait: bool = False,
        pooler: str = "auto",
    ) -> None:
        # Behind a pooler nothing goes in the startup packet: give the login
        # role its role and statement_timeout (alter role ... set ...).
        self.pooler: Pooler = resolve_pooler(url, pooler)
        self.role = role
        self.role_error: str | None = None
        """Why the last new connection was refused (wrong role), if one was."""
        self._unprepared = self.pooler == "transaction"
        self.acquire_timeout = acquire_timeout
        self.unavailable_timeout = min(unavailable_timeout, acquire_timeout)
        self.check_interval = check_interval
        self.probe_interval = probe_interval
        self._available = threading.Event()
        self._available.set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={
                **_connect_kwargs(role, statement_timeout, self.pooler),
                "connect_timeout": max(2, int(connect_timeout)),  # libpq's minimum is 2 s
            },
            configure=self._configure,
            # A failed (re)connection is given up at once and the database
            # marked unavailable; the next call (or the health thread) grows
            # the pool again, so recovery waits for no backoff.
            reconnect_timeout=0,
            reconnect_failed=self._reconnect_failed,
            open=False,
            name="issuer",
        )
        self.pool.open(wait=open_wait, timeout=acquire_timeout)
        self._checker = threading.Thread(target=self._check_loop, daemon=True, name="pool-check")
        self._checker.start()
        self._sql_cache: dict[tuple[str, tuple[str, ...], bool, bool], _Statement] = {}
        self._ping = _Statement(sql.SQL("select 1"))
        self.statements_sent = 0
        """Statements this backend sent (each one round trip); tests count them."""

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        set_json_loads(_loads, conn)
        if self.role:
            problem = role_problem(conn, self.role, self.pooler)
            if problem:  # the pool discards the connection; calls answer 503
                if problem != self.role_error:
                    log.error("%s", problem)
                self.role_error = problem
                raise ConfigError(problem, variable="DATABASE_ROLE")

    # -- health ----------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False from a connection failure until the next call that succeeds."""
        return self._available.is_set()

    def _reconnect_failed(self, _: ConnectionPool) -> None:
        self._mark_unavailable()

    def _mark_unavailable(self) -> None:
        if self._available.is_set():
            log.warning("database unavailable: failing fast until it answers again")
        self._available.clear()
        self._wake.set()  # check the idle connections now, not in check_interval

    def _mark_available(self) -> None:
        if not self._available.is_set():
            log.warning("database available again")
            self._available.set()

    def _check_loop(self) -> None:
        while not self._stop.is_set():
            interval = self.check_interval if self._available.is_set() else self.probe_interval
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                # Discards dead idle connections and grows an empty pool: while
                # the database is away this is the probe that notices its return.
                self.pool.check()
            except Exception:
                log.debug("pool check failed", exc_info=True)

    @staticmethod
    def _went_away(conn: psycopg.Connection[Any]) -> bool:
        """Is this idle pooled connection dead? A round trip only if the server spoke."""
        if conn.closed or conn.broken:
            return True
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return True
        if not readable:
            return False
        try:  # a notice, a parameter status ... or a FATAL and EOF
            conn.execute("")
        except psycopg.Error:
            return True
        return False

    # -- calls -----------------------------------------------------------------
    def _statement(
        self, fn: str, names: tuple[str, ...], composite: bool, setof: bool = False
    ) -> _Statement:
        key = (fn, names, composite, setof)
        stmt = self._sql_cache.get(key)
        if stmt is None:
            args = sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in names
            )
            target = sql.SQL("public.{}({})").format(sql.Identifier(fn), args)
            if setof:
                # One JSON array, in the function's order (as PostgREST does it).
                composed = sql.SQL(
                    "select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r)), "
                    "'[]'::jsonb) from {} as r"
                ).format(target)
            elif composite:
                composed = sql.SQL("select pg_catalog.to_jsonb(r) from {} as r").format(target)
            else:
                composed = sql.SQL("select pg_catalog.to_jsonb({})").format(target)
            stmt = self._sql_cache[key] = _Statement(composed)
        return stmt

    def _timeout(self) -> float:
        return self.acquire_timeout if self._available.is_set() else self.unavailable_timeout

    def call(
        self, fn: str, params: dict[str, Any], *, composite: bool = False, setof: bool = False
    ) -> Any:
        names = tuple(sorted(params))
        values = {k: (Jsonb(v) if isinstance(v, dict | list) else v) for k, v in params.items()}
        row = self._execute(self._statement(fn, names, composite, setof), values)
        return None if row is None else row[0]

    def _execute(
        self,
        stmt: _Statement,
        values: dict[str, Any],
        *,
        max_wait: float | None = None,
        count: bool = True,
    ) -> tuple[Any, ...] | None:
        """One statement on a live pooled connection; failures mapped (class docstring).

        The wait for a connection is re-decided every ``_ACQUIRE_SLICE``
        seconds: a call that started while the database looked available
        stops waiting as soon as it is known to be away.
        """
        start = time.monotonic()
        try:
            while True:
                budget = self._timeout() if max_wait is None else min(self._timeout(), max_wait)
                left = start + budget - time.monotonic()
                if left <= 0:
                    raise PoolTimeout(f"no connection within {budget:.1f} s")
                try:
                    # (Only getting the connection can raise PoolTimeout.)
                    with self.pool.connection(timeout=min(left, _ACQUIRE_SLICE)) as conn:
                        if self._went_away(conn):
                            conn.close()  # the pool replaces it; take the next one
                            self._wake.set()
                            continue
                        if self._unprepared and conn.prepare_threshold is not None:
                            conn.prepare_threshold = None  # see _map_error (42P05, 26000)
                        if count:
                            self.statements_sent += 1
                        query = stmt.for_connection(conn)
                        row: tuple[Any, ...] | None = conn.execute(query, values).fetchone()
                        break
                except PoolTimeout:
                    continue
        except PoolTimeout as exc:
            raise DatabaseUnavailable("database unavailable: no connection") from exc
        except UnicodeEncodeError as exc:  # a lone surrogate from JSON ("\ud800")
            raise RpcError(None, "text must be valid Unicode (no lone surrogates)") from exc
        except psycopg.Error as exc:
            raise self._map_error(exc) from exc
        self._mark_available()
        return row

    def _map_error(self, exc: psycopg.Error) -> Exception:
        sqlstate = getattr(exc, "sqlstate", None)
        cls = sqlstate[:2] if sqlstate else None
        if sqlstate in _PREPARED_STATEMENT_STATES and not self._unprepared:
            # A transaction-mode pooler nobody declared: the statement never ran
            # (refused at Parse or Bind), so 503 is safe to retry. Prepared
            # statements are off for every connection from now on.
            self._unprepared = True
            log.error(
                "prepared statement error %s: is DATABASE_URL a transaction-mode pooler? "
                "Set DATABASE_POOLER=transaction (docs/operations.md); "
                "prepared statements are now off",
                sqlstate,
            )
            return DatabaseUnavailable("database unavailable")
        if sqlstate is None and isinstance(exc, psycopg.DataError):
            # Refused by psycopg before sending: e.g. a NUL byte in a text value.
            return RpcError(None, str(exc) or "invalid value")
        if cls not in _CALLER_CLASSES and (
            isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            or cls in _UNAVAILABLE_CLASSES
        ):
            if cls is None or cls in {"08", "53", "57", "58"}:
                self._mark_unavailable()
            log.info("database call failed, answering 503: %s", sqlstate or type(exc).__name__)
            return DatabaseUnavailable("database unavailable")
        diag = getattr(exc, "diag", None)
        message = diag.message_primary if diag and diag.message_primary else str(exc)
        return rpc_error(sqlstate, message or "database error")

    def ping(self) -> bool:
        try:
            self._execute(self._ping, {}, max_wait=2.0, count=False)
        except (DatabaseUnavailable, RpcError, RpcBug):
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.pool.close()


#: How long one wait for a pooled connection lasts before the call looks again
#: at whether the database is known to be away (PsycopgRpc._execute).
_ACQUIRE_SLICE = 0.25

#: duplicate_prepared_statement, invalid_sql_statement_name: psycopg's named
#: statements meeting a transaction-mode pooler.
_PREPARED_STATEMENT_STATES = frozenset({"42P05", "26000"})

#: SQLSTATE classes that mean "the database cannot serve this now": retry.
_UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
#: ... and those that mean "this input cannot be processed" although psycopg
#: files them under OperationalError (54: statement too complex, e.g. a context
#: nested too deeply): retrying would not help.
_CALLER_CLASSES = frozenset({"22", "23", "54"})


# -- PostgREST backend (supabase-py) --------------------------------------------


class PostgrestRpc:
    """supabase-py over PostgREST: ``POST /rest/v1/rpc/<fn>`` with named arguments."""

    def __init__(self, supabase_url: str, service_role_key: str, *, timeout: float = 10.0) -> None:
        from supabase import ClientOptions, create_client

        self._http = httpx.Client(timeout=timeout)
        self.client = create_client(
            supabase_url,
            service_role_key,
            options=ClientOptions(
                httpx_client=self._http,
                auto_refresh_token=False,
                # No automatic retries: a deduction retried without its
                # idempotency key could be charged twice. Callers retry, with keys.
                postgrest_client_retry=False,
            ),
        )

    def call(
        self, fn: str, params: dict[str, Any], *, composite: bool = False, setof: bool = False
    ) -> Any:
        # PostgREST answers a set-returning function with a JSON array and a
        # composite one with an object: the shape needs no flag here.
        from postgrest.exceptions import APIError

        try:
            response = self.client.rpc(fn, params).execute()
        except APIError as exc:
            code = exc.code or None
            if code and str(code)[:2] in {"08", "57", "53"}:
                raise DatabaseUnavailable("database unavailable") from exc
            if code and str(code).startswith("PGRST"):
                raise DatabaseUnavailable(f"PostgREST error {code}") from exc
            raise rpc_error(str(code) if code else None, exc.message or "database error") from exc
        except Exception as exc:
            if type(exc).__module__.startswith(("httpx", "httpcore")):
                raise DatabaseUnavailable("database unavailable (PostgREST)") from exc
            raise
        data = response.data
        return _decimalize(data)

    def ping(self) -> bool:
        try:
            # L8: one trivial RPC; never the ledger-wide consistency check.
            self.client.rpc("health_check", {}).execute()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    def close(self) -> None:
        self._http.close()


def _decimalize(value: Any) -> Any:
    """PostgREST's JSON numbers arrive as float: turn them back into exact decimals."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimalize(v) for v in value]
    return value


def make_rpc(
    *,
    database_url: str | None = None,
    supabase_url: str | None = None,
    service_role_key: str | None = None,
    role: str | None = "service_role",
    max_size: int = 10,
    pooler: str = "auto",
) -> Rpc:
    """The backend the configuration asks for: a direct URL wins over PostgREST."""
    if database_url:
        return Rpc(PsycopgRpc(database_url, role=role, max_size=max_size, pooler=pooler))
    if supabase_url and service_role_key:
        return Rpc(PostgrestRpc(supabase_url, service_role_key))
    raise DatabaseUnavailable(
        "no database configured: set DATABASE_URL, or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
    )
