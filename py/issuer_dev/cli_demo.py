"""``issuer demo``: the end-to-end story (what `make demo` runs)."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer

from issuer.cli._common import CliError
from issuer_dev.cli_db import local_dir


def demo(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help=(
                "A Postgres server (superuser URL) to run on instead of the project-local one. "
                "The demo creates its own database there and drops it at the end. "
                "DATABASE_URL is not read: the default needs nothing."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Tell the end-to-end story on a fresh local database, through the real HTTP API.

    Starts the project-local Postgres (.local/) if needed, re-creates the database
    `demo`, applies bootstrap and migrations, starts the fake Clerk and the issuer on
    loopback, and stops everything it started at the end. Exit code 0 when every step
    behaved as described.
    """
    from issuer_dev.demo import run_demo

    try:
        report = run_demo(local_dir(), server_url=database_url)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise CliError(f"cannot use the database: {first}") from None
    if not report.ok:
        raise CliError(f"the demo saw {len(report.failures)} unexpected result(s)")
