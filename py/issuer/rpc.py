"""The only module that talks to Postgres: the database's RPCs, typed.

One interface (:class:`Rpc`), two backends chosen by configuration:

* :class:`PsycopgRpc`: a direct connection pool (``DATABASE_URL``). Each RPC
  is ONE statement, one round trip, no client-side transaction. Connections
  start as ``service_role`` (``-c role=...`` in the startup packet, so no extra
  statement) because that is the role the RPCs are granted to.
* :class:`PostgrestRpc`: supabase-py over PostgREST (``SUPABASE_URL`` +
  ``SUPABASE_SERVICE_ROLE_KEY``).

Business rules are not here: Postgres decides, this module asks. Both
backends return the same plain values (``dict`` for jsonb, :class:`CreditResult`
for ``public.credit_result``). A database that cannot be reached raises
:class:`~issuer.errors.DatabaseUnavailable` (HTTP 503, retryable); bad input
that the database refuses (SQLSTATE 22023 and friends) raises :class:`RpcError`
with the SQLSTATE and the database's message.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from issuer.errors import BadRequest, DatabaseUnavailable

log = logging.getLogger(__name__)

__all__ = [
    "CreditResult",
    "PostgrestRpc",
    "PsycopgRpc",
    "Rpc",
    "RpcConflict",
    "RpcError",
    "make_rpc",
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


class RpcBug(RuntimeError):
    """The call itself is wrong (undefined function, privilege, syntax): a bug, HTTP 500."""


def rpc_error(sqlstate: str | None, message: str) -> Exception:
    """Input the database refused is the caller's error; anything else is ours."""
    if sqlstate == "23505":
        return RpcConflict(sqlstate, message)
    if sqlstate and (sqlstate[:2] in {"22", "23"} or sqlstate == "P0001"):
        return RpcError(sqlstate, message)
    return RpcBug(f"{sqlstate}: {message}")


@dataclass(frozen=True)
class CreditResult:
    """``public.credit_result``: the answer of every balance-changing RPC."""

    ok: bool
    pool: str | None
    reason: str | None
    transaction_id: str | None
    amount: Decimal | None
    balance: Decimal | None
    replayed: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CreditResult:
        def dec(v: Any) -> Decimal | None:
            return None if v is None else Decimal(str(v))

        return cls(
            ok=bool(data.get("ok")),
            pool=data.get("pool"),
            reason=data.get("reason"),
            transaction_id=None
            if data.get("transaction_id") is None
            else str(data["transaction_id"]),
            amount=dec(data.get("amount")),
            balance=dec(data.get("balance")),
            replayed=bool(data.get("replayed")),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Backend(Protocol):
    def call(self, fn: str, params: dict[str, Any], *, composite: bool = False) -> Any: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class Rpc:
    """Typed wrappers over the database contract (ARCHITECTURE.md)."""

    #: functions whose result is a composite row (returned as a dict)
    COMPOSITE: ClassVar[frozenset[str]] = frozenset(
        {"deduct_credits_pooled", "grant_credits", "refund_credits"}
    )

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _call(self, fn: str, **params: Any) -> Any:
        clean = {k: _jsonable(v) for k, v in params.items()}
        return self.backend.call(fn, clean, composite=fn in self.COMPOSITE)

    def ping(self) -> bool:
        return self.backend.ping()

    def close(self) -> None:
        self.backend.close()

    # -- attribution and credits -------------------------------------------
    def resolve_org_attribution(
        self, clerk_user_id: str, clerk_org_id: str
    ) -> dict[str, Any] | None:
        result = self._call(
            "resolve_org_attribution", p_clerk_user_id=clerk_user_id, p_clerk_org_id=clerk_org_id
        )
        return result if isinstance(result, dict) else None

    def deduct_credits_pooled(
        self,
        clerk_user_id: str,
        amount: Decimal | str | int,
        description: str,
        clerk_org_id: str | None = None,
        idempotency_key: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> CreditResult:
        row = self._call(
            "deduct_credits_pooled",
            p_clerk_user_id=clerk_user_id,
            p_amount=Decimal(str(amount)),
            p_description=description,
            p_clerk_org_id=clerk_org_id,
            p_idempotency_key=idempotency_key,
            p_context=context if context is not None else {},
        )
        return CreditResult.from_json(row)

    def grant_credits(
        self,
        amount: Decimal | str | int,
        description: str,
        clerk_user_id: str | None = None,
        clerk_org_id: str | None = None,
        idempotency_key: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> CreditResult:
        row = self._call(
            "grant_credits",
            p_amount=Decimal(str(amount)),
            p_description=description,
            p_clerk_user_id=clerk_user_id,
            p_clerk_org_id=clerk_org_id,
            p_idempotency_key=idempotency_key,
            p_context=context if context is not None else {},
        )
        return CreditResult.from_json(row)

    def call(self, fn: str, **params: Any) -> Any:
        """Any other RPC of the contract, by name (named ``p_`` arguments)."""
        return self._call(fn, **params)


# -- psycopg backend -------------------------------------------------------------


def _loads(data: str | bytes) -> Any:
    # Money stays exact: JSON numbers from jsonb become Decimal, never float.
    return json.loads(data, parse_float=Decimal)


class PsycopgRpc:
    """A direct connection pool. One statement per RPC; no client transaction.

    Health: a background thread checks idle connections every
    ``check_interval`` seconds (``pool.check()``), so a restarted server is
    noticed without adding a round trip to every request; a call that meets a
    dead connection fails fast with :class:`DatabaseUnavailable` and the
    pool replaces the connection.
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
        check_interval: float = 5.0,
        open_wait: bool = False,
    ) -> None:
        options = f"-c role={role}" if role else ""
        self.acquire_timeout = acquire_timeout
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, int(connect_timeout)),
                "options": options,
                "prepare_threshold": 0,
            },
            configure=self._configure,
            reconnect_timeout=0,  # keep trying in the background, forever
            open=False,
            name="issuer",
        )
        self.pool.open(wait=open_wait, timeout=acquire_timeout)
        self._stop = threading.Event()
        self._checker = threading.Thread(
            target=self._check_loop, args=(check_interval,), daemon=True, name="pool-check"
        )
        self._checker.start()
        self._sql_cache: dict[tuple[str, tuple[str, ...], bool], sql.Composed] = {}
        self.statements_sent = 0
        """Statements this backend sent (each one round trip); tests count them."""

    @staticmethod
    def _configure(conn: psycopg.Connection[Any]) -> None:
        set_json_loads(_loads, conn)

    def _check_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.pool.check()
            except Exception:
                log.debug("pool check failed", exc_info=True)

    def _statement(self, fn: str, names: tuple[str, ...], composite: bool) -> sql.Composed:
        key = (fn, names, composite)
        stmt = self._sql_cache.get(key)
        if stmt is None:
            args = sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in names
            )
            target = sql.SQL("public.{}({})").format(sql.Identifier(fn), args)
            if composite:
                stmt = sql.SQL("select pg_catalog.to_jsonb(r) from {} as r").format(target)
            else:
                stmt = sql.SQL("select pg_catalog.to_jsonb({})").format(target)
            self._sql_cache[key] = stmt
        return stmt

    def call(self, fn: str, params: dict[str, Any], *, composite: bool = False) -> Any:
        names = tuple(sorted(params))
        values = {k: (Jsonb(v) if isinstance(v, dict | list) else v) for k, v in params.items()}
        stmt = self._statement(fn, names, composite)
        try:
            with self.pool.connection(timeout=self.acquire_timeout) as conn:
                self.statements_sent += 1
                row = conn.execute(stmt, values).fetchone()
        except PoolTimeout as exc:
            raise DatabaseUnavailable("database unavailable: no connection") from exc
        except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
            raise DatabaseUnavailable("database unavailable") from exc
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            sqlstate = getattr(exc, "sqlstate", None)
            if sqlstate and sqlstate[:2] in {"08", "57", "53"}:  # connection, shutdown, resources
                raise DatabaseUnavailable("database unavailable") from exc
            message = diag.message_primary if diag and diag.message_primary else str(exc)
            raise rpc_error(sqlstate, message or "database error") from exc
        return None if row is None else row[0]

    def ping(self) -> bool:
        try:
            with self.pool.connection(timeout=min(self.acquire_timeout, 2.0)) as conn:
                conn.execute("select 1")
            return True
        except (PoolTimeout, psycopg.Error):
            return False

    def close(self) -> None:
        self._stop.set()
        self.pool.close()


# -- PostgREST backend (supabase-py) --------------------------------------------


class PostgrestRpc:
    """supabase-py over PostgREST: ``POST /rest/v1/rpc/<fn>`` with named arguments."""

    def __init__(self, supabase_url: str, service_role_key: str, *, timeout: float = 10.0) -> None:
        from supabase import ClientOptions, create_client

        self.client = create_client(
            supabase_url,
            service_role_key,
            options=ClientOptions(postgrest_client_timeout=timeout, auto_refresh_token=False),
        )

    def call(self, fn: str, params: dict[str, Any], *, composite: bool = False) -> Any:
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
            self.client.rpc("credit_consistency_check", {}).limit(1).execute()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    def close(self) -> None:
        return None


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
) -> Rpc:
    """The backend the configuration asks for: a direct URL wins over PostgREST."""
    if database_url:
        return Rpc(PsycopgRpc(database_url, role=role, max_size=max_size))
    if supabase_url and service_role_key:
        return Rpc(PostgrestRpc(supabase_url, service_role_key))
    raise DatabaseUnavailable(
        "no database configured: set DATABASE_URL, or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
    )
