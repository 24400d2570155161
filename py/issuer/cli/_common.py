"""Shared pieces of the CLI: error handling, output, where the repo's data lives."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import psycopg
import typer
from rich.console import Console
from rich.markup import escape

from issuer.errors import IssuerError
from issuer.localdb import NoPostgresError
from issuer.migrations import MigrationError, repo_root

console = Console()
err_console = Console(stderr=True)


class CliError(Exception):
    """A user mistake or an unavailable resource: printed as one line, exit 1."""


def local_dir() -> Path:
    """``.local/`` of this checkout: demo data, the project-local database."""
    return repo_root() / ".local"


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
    except (
        CliError,
        IssuerError,
        NoPostgresError,
        MigrationError,
        psycopg.OperationalError,
    ) as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise SystemExit(1) from None
    except _usage_error_types() as exc:
        raise SystemExit(_usage_error(exc)) from None
