"""``python -m bench [--quick] [--runs N] [--seconds S] [--scenario NAME ...]``.

Starts its own Postgres (durable: fsync and synchronous_commit on), creates and
migrates a database, seeds it, measures the pgbench baselines and ours in the
same run, prints one table per scenario and writes them all to
``bench/results/<date>-<mode>.md``.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from bench import (
    analytics,
    breakdown,
    coalesce,
    deduct,
    experiments,
    holds,
    http_usage,
    ledger_size,
    pg,
    seat_caps,
    seed,
    tokens,
)
from bench.context import Config, Ctx
from bench.report import Result, markdown, print_result

Scenario = Callable[[Ctx], "Result | list[Result]"]

SCENARIOS: dict[str, Scenario] = {
    "roundtrip": deduct.roundtrip,
    "deduct-hot": deduct.hot,
    "deduct-spread": deduct.spread,
    "issuance": tokens.issuance,
    "verify": tokens.verify,
    "long-lived": tokens.long_lived,
    "http-usage": http_usage.http_usage,
    "holds": holds.holds,
    "analytics": analytics.analytics,
}

#: Not in the default run: variants of the deduction used to explain the gaps.
EXTRA: dict[str, Scenario] = {
    "experiments": experiments.experiments,
    "ledger-size": ledger_size.ledger_size,
    "breakdown": breakdown.breakdown,
    "coalesce": coalesce.coalesce,
    "seat-caps": seat_caps.seat_caps,
}

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short runs, 1 M analytics rows (< 2 min)")
    p.add_argument("--runs", type=int, help="runs per measurement (default 3, quick 1)")
    p.add_argument("--seconds", type=float, help="length of one load (default 4, quick 2)")
    p.add_argument("--analytics-rows", type=int, help="ledger rows for the analytics scenario")
    p.add_argument(
        "--clients",
        help=(
            "deduction and http-usage scenarios: only these client counts, comma-separated "
            "(e.g. 16; http-usage: 16 = the 1,000 pools, 64 = the one org pool)"
        ),
    )
    p.add_argument(
        "--ledger-sizes",
        help="ledger-size scenario: ledger rows in millions, comma-separated "
        "(default 1,20,50; quick 0.1,1)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, *EXTRA],
        help="run only this scenario (repeatable); default: all but experiments and ledger-size",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="issuance and verification: add where the Python time goes (cProfile)",
    )
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/*.md")
    p.add_argument("--out", type=Path, help="write the markdown here instead")
    return p.parse_args(argv)


def header(args: argparse.Namespace, config: Config, srv: pg.Server, argv: list[str]) -> str:
    command = "python -m bench" + ("" if not argv else " " + shlex.join(argv))
    s = srv.settings
    lines = [
        f"# Benchmark results: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{'quick' if config.quick else 'full'} mode",
        "",
        f"- command: `{command}`",
        f"- Postgres: {srv.version}",
        "- durable settings: "
        + ", ".join(f"{k}={v}" for k, v in s.items() if k != "shared_preload_libraries"),
        f"- extra: shared_preload_libraries={s.get('shared_preload_libraries')} "
        "(server-side round-trip counts and statement times)",
        f"- machine: {srv.cpus} CPUs, {platform.machine()}, Python {platform.python_version()};"
        " shared with other work, so only ratios measured in the same run are compared",
        f"- runs per figure: {config.runs}, {config.seconds:g} s per load; "
        "pgbench -M prepared over TCP (127.0.0.1); ours as service_role (-c role=service_role)",
        "",
    ]
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    """Every row that has a target, in one table (the figures PERFORMANCE.md asks for)."""
    lines = [
        "## Targets",
        "",
        "| figure | clients | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for r in result.rows:
            if r.met is None:
                continue
            cells = [r.scenario, r.clients, r.ours, r.baseline, r.ratio_text, r.target, r.met_text]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n\n" if len(lines) > 4 else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    config = Config.make(
        quick=args.quick,
        runs=args.runs,
        seconds=args.seconds,
        analytics_rows=args.analytics_rows,
        clients=tuple(int(c) for c in args.clients.split(",")) if args.clients else (),
        profile=args.profile,
        ledger_sizes=tuple(
            int(float(m) * 1_000_000) for m in (args.ledger_sizes or "").split(",") if m
        ),
    )
    names = args.scenario or list(SCENARIOS)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, pg.server() as srv:
        console.print(
            f"[bold]Postgres[/bold] {srv.version.split(' on ')[0]}: "
            f"fsync={srv.settings['fsync']}, "
            f"synchronous_commit={srv.settings['synchronous_commit']}, "
            f"full_page_writes={srv.settings['full_page_writes']} (durable); "
            f"{config.runs} run(s) x {config.seconds:g} s"
        )
        url = pg.new_database(srv, "bench")
        seed.seed(url)
        ctx = Ctx(
            config=config,
            server=srv,
            dbname="bench",
            url=url,
            workdir=Path(tmp),
            console=console,
        )
        results: list[Result] = []
        for name in names:
            fn = SCENARIOS.get(name) or EXTRA[name]
            console.print(f"[dim]running {name} ...[/dim]")
            got = fn(ctx)
            for result in got if isinstance(got, list) else [got]:
                print_result(console, result)
                results.append(result)
        doc = header(args, config, srv, argv)
    elapsed = time.monotonic() - t0
    doc += (
        f"- total time: {elapsed:.0f} s\n\n"
        + summary(results)
        + "\n".join(markdown(r) for r in results)
    )
    console.print(f"[bold]done in {elapsed:.0f} s[/bold]")
    if not args.no_write:
        out = args.out or RESULTS / (
            f"{datetime.now(UTC):%Y-%m-%d}-{'quick' if config.quick else 'full'}.md"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(doc)
        console.print(f"written to {out}")
    return 0 if all(r.correct for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
