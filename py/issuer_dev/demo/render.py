"""How the story looks in a terminal: one line per step, tables, a spinner.

The story never prints; it tells a :class:`Narrator` what happened. Rich
handles the rest: colours and a spinner on a terminal, plain text (no escape
codes, no spinner frames) when the output is piped into a file or a test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

PIPED_WIDTH = 120
"""Width when not writing to a terminal (rich would otherwise assume 80)."""


def demo_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=PIPED_WIDTH)
    return console


def fmt(value: Any) -> str:
    """A value as a table cell: numbers without trailing zeros, null as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | float | int):
        number = Decimal(str(value))
        if number == number.to_integral_value():
            return str(number.quantize(Decimal(1)))
        return format(number.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def short_id(value: Any) -> str:
    """UUIDs shortened for tables (the full value is in the database)."""
    text = fmt(value)
    if len(text) == 36 and text.count("-") == 4:
        return text[:8] + "…"
    return text


class Narrator:
    """Prints the story with rich."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or demo_console()

    def title(self, text: str, subtitle: str) -> None:
        self.console.print()
        self.console.print(f"[bold]{escape(text)}[/]")
        self.console.print(f"[dim]{escape(subtitle)}[/]")

    def chapter(self, number: int, text: str) -> None:
        self.console.print()
        self.console.rule(f"[bold cyan]{number}. {escape(text)}[/]", align="left", style="cyan")

    def step(self, text: str, detail: str = "", *, ok: bool = True) -> None:
        mark = "[green]✓[/]" if ok else "[bold red]✗[/]"
        line = f"  {mark} {escape(text)}"
        if detail:
            line += f"  [dim]{escape(detail)}[/]"
        self.console.print(line, soft_wrap=True)

    def blank(self) -> None:
        self.console.print()

    def note(self, text: str) -> None:
        self.console.print(f"    [dim]{escape(text)}[/]", soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, text: str) -> Iterator[None]:
        """A spinner while a slow step runs, then the step's line."""
        with self.console.status(f"{escape(text)} …", spinner="dots"):
            yield
        self.step(text)

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        numeric: Sequence[str] = (),
    ) -> None:
        table = Table(title=title, title_justify="left", title_style="bold")
        for column in columns:
            table.add_column(column, justify="right" if column in numeric else "left")
        for row in rows:
            table.add_row(*(escape(fmt(cell)) for cell in row))
        self.console.print()
        self.console.print(table)

    def claims_table(self, title: str, tokens: Mapping[str, Mapping[str, Any]]) -> None:
        """Decoded claims side by side, one column per person."""
        names = list(tokens)
        keys: list[str] = []
        for claims in tokens.values():
            keys.extend(k for k in claims if k not in keys)
        table = Table(title=title, title_justify="left", title_style="bold")
        table.add_column("claim", style="bold")
        for name in names:
            table.add_column(name)
        for key in keys:
            cells = []
            for name in names:
                value = tokens[name].get(key)
                if key in {"iat", "exp"} and isinstance(value, int):
                    cell = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M")
                else:
                    cell = short_id(value)
                cells.append(escape(cell))
            table.add_row(key, *cells)
        self.console.print()
        self.console.print(table)

    def result(self, ok: bool, text: str) -> None:
        self.console.print()
        if ok:
            self.console.print(f"[bold green]{escape(text)}[/]")
        else:
            self.console.print(f"[bold red]{escape(text)}[/]")
