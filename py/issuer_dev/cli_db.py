"""``issuer db``: the local database's life cycle and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from issuer.cli._common import CliError, DbUrlOption, console, emit_json, resolve_database_url
from issuer_dev import localdb, migrations

app = typer.Typer(help="Local database life cycle and migrations.", no_args_is_help=True)


def local_dir() -> Path:
    """``.local/`` of this checkout (demo data, the project-local database), else of the cwd."""
    try:
        return migrations.repo_root() / ".local"
    except migrations.MigrationError:
        return Path.cwd() / ".local"


def _project() -> localdb.ProjectDb:
    return localdb.ProjectDb(local_dir())


def project_url() -> str | None:
    """The URL of the running project-local database, if one runs."""
    return _project().url()


@app.command()
def up(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Start the project-local Postgres (in .local/), bootstrap it and apply the migrations."""
    cluster, url, started = _project().up()
    migrations.apply_bootstrap(url)
    applied = migrations.migrate(url)
    if json_out:
        emit_json({"url": url, "started": started, "applied": [m.version for m in applied]})
        return
    state = "started" if started else "already running"
    console.print(f"[green]●[/] local Postgres {state} on port {cluster.port}")
    console.print(f"  applied {len(applied)} migration(s)")
    console.print(f"  DATABASE_URL={url}", highlight=False)


@app.command()
def migrate(
    database_url: DbUrlOption = None,
    bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap",
            help="Apply sql/bootstrap first (the Supabase stand-in). Local/test databases only.",
        ),
    ] = False,
    migrations_dir: Annotated[
        Path | None,
        typer.Option(
            "--migrations-dir",
            envvar=migrations.MIGRATIONS_DIR_ENV,
            help="The migrations (a folder of .sql, or an unpacked issuer-supabase bundle); "
            "default: the checkout's supabase/migrations.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Apply supabase/migrations in version order, recorded like `supabase db push`."""
    url = resolve_database_url(database_url)
    folder = migrations.migrations_dir(migrations_dir)  # before anything is applied
    if bootstrap:
        migrations.apply_bootstrap(url)
    applied = migrations.migrate(url, folder)
    if json_out:
        emit_json({"applied": [{"version": m.version, "name": m.name} for m in applied]})
        return
    if not applied:
        console.print("database is up to date")
    for m in applied:
        console.print(f"applied {m.version}_{m.name}")


@app.command()
def url() -> None:
    """Print the project-local database URL (for DATABASE_URL=...)."""
    found = _project().url()
    if not found:
        raise CliError("the project-local database is not running: run `issuer db up`")
    typer.echo(found)


@app.command()
def down(
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the data (what `make clean` does).")
    ] = False,
) -> None:
    """Stop the project-local Postgres."""
    was_running = _project().down(purge=purge)
    console.print("stopped" if was_running else "not running")
