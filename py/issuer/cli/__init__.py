"""The ``issuer`` command line. One sub-module per command group.

User mistakes end as one readable line on stderr and a non-zero exit, never
a traceback: commands raise :class:`CliError` (or an IssuerError) and
:func:`main` turns it into that line.
"""

from __future__ import annotations

import typer

from issuer.cli import credits, db, demo, keys, serve, tokens
from issuer.cli._common import run_app

app = typer.Typer(
    name="issuer",
    help="Organization-scoped tokens with pooled, seat-gated credits on Supabase.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.command(name="serve")(serve.serve)
app.command(name="demo")(demo.demo)
app.add_typer(tokens.app, name="token")
app.add_typer(credits.app, name="credits")
app.add_typer(keys.app, name="keys")


def main() -> None:
    """The console script."""
    run_app(app)


__all__ = ["app", "main"]
