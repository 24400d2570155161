"""``issuer credits``: grant, deduct and show credits through the database's RPCs.

The rules are the database's (``grant_credits``, ``deduct_credits_pooled``):
this is a thin operator's tool, acting as ``service_role`` like any backend.
A refusal (``ok = false``) is printed and exits 1, so scripts can test ``$?``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any

import psycopg
import typer
from psycopg.rows import dict_row

from issuer.amounts import AMOUNT_HINT, InvalidAmount, parse_decimal
from issuer.cli._common import (
    CliError,
    DbUrlOption,
    console,
    emit_json,
    err_console,
    resolve_database_url,
)
from issuer.rpc import CreditResult, Rpc, RpcBug, make_rpc

app = typer.Typer(
    help="Grant, deduct and show credits (the database's RPCs, as service_role).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Clerk user id (user_...): personal credits.", show_default=False),
]
OrgOption = Annotated[
    str | None,
    typer.Option(
        "--org", help="Clerk organization id (org_...): the org's pool.", show_default=False
    ),
]
AmountOption = Annotated[
    str, typer.Option("--amount", help="Credits, up to 4 decimals (e.g. 2.5).", show_default=False)
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="A retry with the same key is applied once.",
        show_default=False,
    ),
]


def out(text: str, *, style: str | None = None) -> None:
    """One line on stdout (rich markup), never wrapped mid-word."""
    console.print(text, style=style, highlight=False, soft_wrap=True)


def err(text: str) -> None:
    """One line on stderr (hints, so stdout stays clean for scripts)."""
    err_console.print(text, highlight=False, soft_wrap=True)


def database_role() -> str | None:
    """The role the connection takes: DATABASE_ROLE (default service_role; empty: login role)."""
    role = os.environ.get("DATABASE_ROLE", "service_role").strip()
    return role or None


def _options(role: str | None) -> str:
    return f"-c role={role}" if role else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def connect(database_url: str | None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A direct connection as DATABASE_ROLE, with one-line errors for the usual mistakes."""
    url = resolve_database_url(database_url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=5,
            options=_options(database_role()),
            row_factory=dict_row,
        )
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot connect to the database: {_first_line(exc)}") from None
    with conn:
        try:
            yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise CliError(
                f"{_first_line(exc)}: is the database migrated? (`issuer db migrate`)"
            ) from None
        except psycopg.Error as exc:
            raise CliError(f"database error: {_first_line(exc)}") from None


@contextlib.contextmanager
def open_rpc(database_url: str | None) -> Iterator[Rpc]:
    """The RPC client on a direct connection (checked first, for a readable error)."""
    url = resolve_database_url(database_url)
    with connect(url):
        pass
    pooler = os.environ.get("DATABASE_POOLER", "").strip() or "auto"
    rpc = make_rpc(database_url=url, role=database_role(), max_size=1, pooler=pooler)
    try:
        yield rpc
    except RpcBug as exc:
        raise CliError(
            f"database error: {exc} (is the database migrated? `issuer db migrate`)"
        ) from None
    finally:
        rpc.close()


def parse_amount(value: str) -> Decimal:
    """The one rule of a valid amount (issuer.amounts, F5), as the HTTP routes apply it."""
    try:
        return parse_decimal(value)
    except InvalidAmount:
        raise CliError(f"--amount: {value!r} is not {AMOUNT_HINT}") from None


def parse_context(value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        context = json.loads(value)
    except json.JSONDecodeError:
        raise CliError("--context must be a JSON object") from None
    if not isinstance(context, dict):
        raise CliError("--context must be a JSON object")
    return context


def _result_json(result: CreditResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "pool": result.pool,
        "reason": result.reason,
        "transaction_id": None if result.transaction_id is None else str(result.transaction_id),
        "amount": None if result.amount is None else str(result.amount),
        "balance": None if result.balance is None else str(result.balance),
        "replayed": bool(result.replayed),
    }


def _report(verb: str, who: str, result: CreditResult, json_out: bool) -> None:
    if json_out:
        emit_json(_result_json(result))
    if not result.ok:
        balance = "" if result.balance is None else f" (balance {result.balance.normalize():f})"
        raise CliError(f"refused: {result.reason}{balance}")
    if json_out or result.amount is None or result.balance is None:
        return
    replay = " (replayed: nothing moved this time)" if result.replayed else ""
    out(
        f"{verb} {result.amount.normalize():f} {'to' if verb == 'granted' else 'from'} {who} "
        f"({result.pool} pool): balance {result.balance.normalize():f}{replay}",
    )
    out(f"  transaction {result.transaction_id}", style="dim")


def _one_owner(user: str | None, org: str | None) -> None:
    if (user is None) == (org is None):
        raise CliError("give exactly one of --user and --org")


@app.command()
def grant(
    amount: AmountOption,
    user: UserOption = None,
    org: OrgOption = None,
    description: Annotated[str, typer.Option(help="Ledger description.")] = "granted by issuer CLI",
    idempotency_key: KeyOption = None,
    database_url: DbUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Add credits to a user's personal balance or an organization's pool (grant_credits)."""
    _one_owner(user, org)
    value = parse_amount(amount)
    with open_rpc(database_url) as rpc:
        result = rpc.grant_credits(
            p_amount=value,
            p_description=description,
            p_clerk_user_id=user,
            p_clerk_org_id=org,
            p_idempotency_key=idempotency_key,
        )
    _report("granted", user or str(org), result, json_out)


@app.command()
def deduct(
    amount: AmountOption,
    user: Annotated[
        str,
        typer.Option("--user", help="Clerk user id (user_...) who spends.", show_default=False),
    ],
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            help="Spend the org's pool (needs an active seat); without it: personal credits.",
            show_default=False,
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="Ledger description.")] = "spent via issuer CLI",
    idempotency_key: KeyOption = None,
    context: Annotated[
        str | None,
        typer.Option(help="JSON object stored under metadata.context.", show_default=False),
    ] = None,
    database_url: DbUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Spend credits (deduct_credits_pooled): the org's pool with --org, never a fallback."""
    value = parse_amount(amount)
    ctx = parse_context(context)
    with open_rpc(database_url) as rpc:
        result = rpc.deduct_credits_pooled(
            p_clerk_user_id=user,
            p_amount=value,
            p_description=description,
            p_clerk_org_id=org,
            p_idempotency_key=idempotency_key,
            p_context=ctx,
        )
    _report("deducted", org or user, result, json_out)


_BALANCE_SQL = """
select pool, clerk_user_id, clerk_org_id, organization_name, subscription_status, balance
from public.credit_balances
where (pool = 'personal' and clerk_user_id = %(user)s)
   or (pool = 'organization' and clerk_org_id = %(org)s and is_current)
order by pool desc
"""


@app.command()
def balance(
    user: UserOption = None,
    org: OrgOption = None,
    database_url: DbUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show a user's personal balance and/or an organization's current pool."""
    if user is None and org is None:
        raise CliError("give --user, --org or both")
    with connect(database_url) as conn:
        rows = conn.execute(_BALANCE_SQL, {"user": user, "org": org}).fetchall()
    found = {("personal", r["clerk_user_id"]) for r in rows} | {
        ("organization", r["clerk_org_id"]) for r in rows
    }
    missing = []
    if user is not None and ("personal", user) not in found:
        missing.append(f"no user {user}")
    if org is not None and ("organization", org) not in found:
        missing.append(f"no organization {org} with a current subscription")
    if json_out:
        emit_json(
            [
                {
                    "pool": r["pool"],
                    "clerk_user_id": r["clerk_user_id"],
                    "clerk_org_id": r["clerk_org_id"],
                    "organization_name": r["organization_name"],
                    "subscription_status": r["subscription_status"],
                    "balance": str(r["balance"]),
                }
                for r in rows
            ]
        )
    else:
        for r in rows:
            if r["pool"] == "personal":
                who = f"{r['clerk_user_id']} (personal)"
            else:
                who = (
                    f"{r['clerk_org_id']} {r['organization_name']} "
                    f"(organization pool, subscription {r['subscription_status']})"
                )
            out(f"{who}: {Decimal(r['balance']).normalize():f}")
    if missing:
        raise CliError("; ".join(missing))


_USAGE_SQL = {
    # docs/analytics.md, org_usage_by_day and seats_of_an_org, with parameters.
    "day": """
select usage_date, deductions, credits_used, credits_refunded, net_credits_used, active_seats
from public.credit_usage_by_org_day
where clerk_org_id = %(org)s
order by usage_date desc
limit %(days)s
""",
    "seat": """
select clerk_user_id, seat_role, seat_status, deductions, net_credits_used, last_used_at
from public.credit_usage_by_seat
where clerk_org_id = %(org)s
order by net_credits_used desc
""",
}


_KNOWN_ORG_SQL = "select 1 as known from public.organizations where clerk_org_id = %(org)s"


@app.command()
def usage(
    org: Annotated[
        str, typer.Option("--org", help="Clerk organization id (org_...).", show_default=False)
    ],
    by: Annotated[str, typer.Option("--by", help="Group by 'day' or 'seat'.")] = "day",
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="--by day: last N.")] = 30,
    read_url: Annotated[
        str | None,
        typer.Option(
            "--read-url",
            envvar="DATABASE_READ_URL",
            help="Read replica to read from (default: DATABASE_READ_URL); "
            "see DATABASE_READ_MAX_LAG and DATABASE_READ_FALLBACK.",
            show_default=False,
        ),
    ] = None,
    database_url: DbUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """An org's usage per day or per seat (analytics views), from the read replica if set.

    The read may be a little stale: it runs on DATABASE_READ_URL when that
    replica lags at most DATABASE_READ_MAX_LAG seconds, else on the primary
    (or is refused with DATABASE_READ_FALLBACK=refuse).
    """
    from issuer.errors import ConfigError, DatabaseUnavailable
    from issuer.readdb import ReadConfig, read

    if by not in _USAGE_SQL:
        raise CliError("--by must be 'day' or 'seat'")
    env = dict(os.environ)
    env["DATABASE_READ_URL"] = read_url or ""
    try:
        config = ReadConfig.from_env(resolve_database_url(database_url), env)
        result = read(config, _USAGE_SQL[by], {"org": org, "days": days})
        # F5: an org that does not exist is an error (exit 1), as for `balance`;
        # an org without usage is not.
        known = result.rows or read(config, _KNOWN_ORG_SQL, {"org": org}).rows
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    except DatabaseUnavailable as exc:
        raise CliError(str(exc)) from None
    except psycopg.errors.UndefinedTable as exc:
        raise CliError(
            f"{_first_line(exc)}: is the database migrated? (`issuer db migrate`)"
        ) from None
    except psycopg.Error as exc:
        raise CliError(f"database error: {_first_line(exc)}") from None
    if not known:
        raise CliError(f"no organization {org}")
    if json_out:
        emit_json({**result.summary(), "rows": result.rows})
        return
    for row in result.rows:
        out("  ".join(f"{key}={value}" for key, value in row.items()))
    if not result.rows:
        out(f"no usage recorded for {org}")
    source = result.summary()
    if result.served_by == "replica":
        err(f"read from the replica (lag {source['lag_seconds']} s)")
    else:
        err(f"read from the primary ({result.fallback_reason})")
