"""One table per scenario: printed with rich, written as markdown."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table


@dataclass
class Row:
    scenario: str
    clients: str
    ours: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None
    correctness: str
    note: str = ""

    @property
    def ratio_text(self) -> str:
        return "-" if self.ratio is None else f"{self.ratio:.2f}"

    @property
    def met_text(self) -> str:
        return {True: "yes", False: "NO", None: "-"}[self.met]


@dataclass
class Result:
    """What one scenario measured: its table rows and free-form notes."""

    name: str
    title: str
    baseline_name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def correct(self) -> bool:
        return all(r.correctness.startswith(("exact", "ok", "-")) for r in self.rows)


HEADERS = ("scenario", "clients", "ours", "baseline", "ratio", "target", "met", "correctness")


def print_result(console: Console, result: Result) -> None:
    table = Table(
        title=f"{escape(result.title)}  [dim](baseline: {escape(result.baseline_name)})[/dim]"
    )
    for h in HEADERS:
        table.add_column(h, justify="right" if h in {"clients", "ratio"} else "left")
    for r in result.rows:
        ratio_style = "" if r.met is None else ("green" if r.met else "red")
        cells = [
            escape(r.scenario),
            r.clients,
            escape(r.ours),
            escape(r.baseline),
            f"[{ratio_style}]{r.ratio_text}[/{ratio_style}]" if ratio_style else r.ratio_text,
            escape(r.target),
            r.met_text,
            escape(r.correctness),
        ]
        table.add_row(*cells)
    console.print(table)
    for r in result.rows:
        if r.note:
            console.print(f"  [dim]{escape(r.scenario)} @ {r.clients}: {escape(r.note)}[/dim]")
    for note in result.notes:
        console.print(f"  [dim]{escape(note)}[/dim]")


def markdown(result: Result) -> str:
    lines = [
        f"### {result.title}",
        "",
        f"Baseline: {result.baseline_name}. ({result.seconds:.0f} s)",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    for r in result.rows:
        cells = [
            r.scenario,
            r.clients,
            r.ours,
            r.baseline,
            r.ratio_text,
            r.target,
            r.met_text,
            r.correctness,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    for r in result.rows:
        if r.note:
            lines.append(f"- {r.scenario} @ {r.clients}: {r.note}")
    for note in result.notes:
        lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)
