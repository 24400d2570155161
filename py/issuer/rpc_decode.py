"""Turning an RPC's JSON answer into typed values (used by :mod:`issuer.rpc_generated`).

Both backends hand over JSON: psycopg reads ``to_jsonb(...)`` with JSON numbers
as :class:`~decimal.Decimal`, PostgREST's floats are turned back into decimals
(``rpc._decimalize``). So a ``uuid`` arrives as a string, a ``timestamptz`` as
an ISO 8601 string, a ``numeric`` as a ``Decimal`` (or an ``int`` when it has no
fraction). These functions convert one value each and refuse anything else:
an answer that does not have the shape the catalog promised is a bug in the
contract (:class:`RpcContractError`, HTTP 500), never a value guessed at (fail
closed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

__all__ = [
    "RpcContractError",
    "as_bool",
    "as_date",
    "as_datetime",
    "as_decimal",
    "as_float",
    "as_int",
    "as_json",
    "as_list",
    "as_str",
    "as_uuid",
    "nullable_row",
    "required",
    "row",
    "rows",
    "to_param",
]

T = TypeVar("T")


class RpcContractError(RuntimeError):
    """An RPC answered something its catalog type does not allow: a bug, HTTP 500."""


def _bad(value: Any, what: str) -> RpcContractError:
    return RpcContractError(f"expected {what}, got {type(value).__name__}")


def row(data: Any, type_name: str, columns: tuple[str, ...]) -> dict[str, Any]:
    """One composite value (a JSON object) with every column of ``columns``.

    A missing column (not a null one) breaks the contract: the database and
    this client disagree about the type.
    """
    if not isinstance(data, dict):
        raise RpcContractError(f"{type_name}: expected a row (JSON object), got {data!r:.80}")
    for name in columns:
        if name not in data:
            raise RpcContractError(f"{type_name}: the answer has no column {name!r}")
    return data


def nullable_row(data: Any, decode: Callable[[Any], T]) -> T | None:
    """A composite value that may be null: ``None`` for a null row, else ``decode(data)``.

    A null row arrives as JSON ``null`` (a nested column, ``to_jsonb(f(...))``)
    or as an object whose every column is null (``select to_jsonb(r) from f()
    as r``, and PostgREST, expand a null composite into its columns). Both are
    null in Postgres too: ``row(null, null) is null`` is true. Anything else
    must decode as the row type (``decode`` checks it).
    """
    if data is None or (isinstance(data, dict) and all(v is None for v in data.values())):
        return None
    return decode(data)


def rows(data: Any, fn: str) -> list[Any]:
    """A set-returning function's answer (a JSON array)."""
    if not isinstance(data, list):
        raise RpcContractError(f"{fn}: expected a set of rows (JSON array), got {data!r:.80}")
    return data


def required(value: T | None, where: str) -> T:
    """A column the catalog declares not null."""
    if value is None:
        raise RpcContractError(f"{where}: null where the contract says not null")
    return value


def as_bool(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    raise _bad(v, "a boolean")


def as_int(v: Any) -> int | None:
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    if isinstance(v, Decimal) and v == v.to_integral_value():
        return int(v)
    raise _bad(v, "an integer")


def as_float(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        return float(v)
    raise _bad(v, "a number")


def as_decimal(v: Any) -> Decimal | None:
    if v is None or isinstance(v, Decimal):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return Decimal(v)
    if isinstance(v, str):  # numeric as text (e.g. 'NaN' or from a text column)
        return Decimal(v)
    if isinstance(v, float):  # only if a JSON decoder let one through
        return Decimal(repr(v))
    raise _bad(v, "a number")


def as_str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise _bad(v, "a string")


def as_uuid(v: Any) -> UUID | None:
    if v is None or isinstance(v, UUID):
        return v
    if isinstance(v, str):
        return UUID(v)
    raise _bad(v, "a uuid string")


def as_datetime(v: Any) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    if isinstance(v, str):
        return datetime.fromisoformat(v)
    raise _bad(v, "an ISO 8601 timestamp")


def as_date(v: Any) -> date | None:
    if v is None or isinstance(v, date):
        return v
    if isinstance(v, str):
        return date.fromisoformat(v)
    raise _bad(v, "an ISO 8601 date")


def as_json(v: Any) -> Any:
    return v


def as_list(v: Any, item: Callable[[Any], T]) -> list[T] | None:
    if v is None:
        return None
    if isinstance(v, list):
        return [item(x) for x in v]
    raise _bad(v, "an array")


def to_param(value: Any) -> Any:
    """An argument as both backends can send it (JSON for PostgREST, text for psycopg)."""
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} seconds"
    return value
