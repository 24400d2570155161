"""The ``issuer`` command line. One sub-module per command group.

User mistakes end as one readable line on stderr and a non-zero exit, never
a traceback: commands raise :class:`CliError` (or an IssuerError) and
:func:`main` turns it into that line.
"""

from __future__ import annotations

import typer

from issuer.cli import credits, keys, serve, tokens
from issuer.cli._common import run_app

app = typer.Typer(
    name="issuer",
    help="Organization-scoped tokens with pooled, seat-gated credits on Supabase.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(name="serve")(serve.serve)
app.add_typer(tokens.app, name="token")
app.add_typer(credits.app, name="credits")
app.add_typer(keys.app, name="keys")


def _add_development_verbs() -> None:
    """`issuer db` and `issuer demo` come with the development harness (package
    ``issuer_dev``, a checkout's `make setup`), which the runtime wheel leaves out."""
    try:
        from issuer_dev import cli_db, cli_demo
    except ImportError:
        return
    app.add_typer(cli_db.app, name="db")
    app.command(name="demo")(cli_demo.demo)


_add_development_verbs()


def main() -> None:
    """The console script."""
    run_app(app)


__all__ = ["app", "main"]
