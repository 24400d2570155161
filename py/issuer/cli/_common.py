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


def run_app(app: typer.Typer) -> None:
    """Run the app; known errors become one line on stderr and exit code 1."""
    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        err_console.print("aborted")
        raise SystemExit(1) from None
    except (
        CliError,
        IssuerError,
        NoPostgresError,
        MigrationError,
        psycopg.OperationalError,
    ) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
