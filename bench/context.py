"""What every scenario gets: the server, the seeded database, the run's knobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench.pg import Server


@dataclass(frozen=True)
class Config:
    quick: bool
    runs: int
    seconds: float
    """Length of one measured load (one pgbench run, one HTTP load ...)."""
    analytics_rows: int
    http_clients: int = 16
    clients: tuple[int, ...] = ()
    """Only these client counts in the deduction scenarios (empty: all)."""
    profile: bool = False
    """Add a cProfile summary of the Python side to issuance and verification."""
    ledger_sizes: tuple[int, ...] = ()
    """Ledger rows per size of the ledger-size scenario (empty: its defaults)."""

    @classmethod
    def make(
        cls,
        *,
        quick: bool,
        runs: int | None = None,
        seconds: float | None = None,
        analytics_rows: int | None = None,
        clients: tuple[int, ...] = (),
        profile: bool = False,
        ledger_sizes: tuple[int, ...] = (),
    ) -> Config:
        if quick:
            return cls(
                quick=True,
                runs=runs or 1,
                seconds=seconds or 2,
                analytics_rows=analytics_rows or 1_000_000,
                clients=clients,
                profile=profile,
                ledger_sizes=ledger_sizes,
            )
        return cls(
            quick=False,
            runs=runs or 3,
            seconds=seconds or 4,
            analytics_rows=analytics_rows or 10_000_000,
            clients=clients,
            profile=profile,
            ledger_sizes=ledger_sizes,
        )


@dataclass
class Ctx:
    config: Config
    server: Server
    dbname: str
    url: str
    """Superuser URL of the seeded, migrated benchmark database."""
    workdir: Path
    console: Console
