"""Shared pieces of the CLI: error handling, output, which database a command uses."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import click
import psycopg
import typer
from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.markup import escape

from issuer.errors import IssuerError

console = Console()
err_console = Console(stderr=True)


class CliError(Exception):
    """A user mistake or an unavailable resource: printed as one line, exit 1."""


DbUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Postgres URL. Default: $DATABASE_URL, else the project-local database.",
    ),
]


def project_local_url() -> str | None:
    """The running project-local database (`issuer db up`), in a development install.

    The development harness (package ``issuer_dev``: local Postgres, migrations,
    fake Clerk, demo) is not in the runtime wheel; without it there is none.
    """
    try:
        from issuer_dev.cli_db import project_url
    except ImportError:
        return None
    return project_url()


def resolve_database_url(explicit: str | None) -> str:
    """--database-url, else DATABASE_URL, else the running project-local database."""
    url = explicit or os.environ.get("DATABASE_URL") or project_local_url()
    if not url:
        raise CliError("no database: pass --database-url, set DATABASE_URL, or run `issuer db up`")
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        source = "--database-url" if explicit else "DATABASE_URL"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(
            f"{source} is not a database URL such as postgresql://user@host:5432/db ({reason})"
        ) from None
    return url


def _harness_errors() -> tuple[type[Exception], ...]:
    """The development harness's own errors, when it is installed."""
    try:
        from issuer_dev.localdb import NoPostgresError
        from issuer_dev.migrations import MigrationError
    except ImportError:
        return ()
    return (NoPostgresError, MigrationError)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Usage errors: click's, and those of typer >= 0.20, which vendors click."""
    types: list[type[Exception]] = [click.ClickException]
    vendored = getattr(typer, "TyperException", None)
    if isinstance(vendored, type) and issubclass(vendored, Exception):
        types.append(vendored)
    return tuple(types)


def _usage_error(exc: Exception) -> int:
    """Print a usage error as one line (or the help text); return the exit code."""
    code = int(getattr(exc, "exit_code", 2))
    if type(exc).__name__ == "NoArgsIsHelpError":
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return code
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    err_console.print(
        f"[bold red]error:[/] {escape(message)}{escape(hint)}", highlight=False, soft_wrap=True
    )
    return code


def run_app(app: typer.Typer) -> None:
    """Run the app: user mistakes end as one line on stderr and a non-zero exit."""
    one_line: tuple[type[Exception], ...] = (
        CliError,
        IssuerError,
        psycopg.OperationalError,
        *_harness_errors(),
    )
    try:
        app(standalone_mode=False)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise SystemExit(130) from None
    except (click.exceptions.Exit, typer.Exit) as exc:
        raise SystemExit(exc.exit_code) from None
    except (click.exceptions.Abort, typer.Abort):
        err_console.print("aborted")
        raise SystemExit(1) from None
    except one_line as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise SystemExit(1) from None
    except _usage_error_types() as exc:
        raise SystemExit(_usage_error(exc)) from None
    except Exception as exc:  # noqa: BLE001 - F5: never a traceback, even for a bug
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err_console.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}"
            f"{': ' + escape(reason) if reason else ''} (a bug: please report it)",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(1) from None
