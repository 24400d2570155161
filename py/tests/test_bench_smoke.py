"""The benchmark harness runs end to end: one short scenario, one table.

Only that it runs and reports correctness; tests never assert timings
(docs/performance.md has the figures, `make bench` measures them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from issuer_dev.migrations import repo_root


def run_module(*args: str) -> str:
    """``python -m <args>`` from the repository root; its stdout, after asserting it exited 0."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_bench_runs_one_scenario_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "result.md"
    printed = run_module(
        "bench",
        "--quick",
        "--scenario",
        "deduct-spread",
        "--clients",
        "16",
        "--seconds",
        "1",
        "--out",
        str(out),
    )
    assert "fsync=on" in printed and "synchronous_commit=on" in printed
    for column in ("clients", "ours", "baseline", "ratio", "correctness"):
        assert column in printed
    assert "exact, check empty" in printed  # balances exact, consistency check empty
    written = out.read_text()
    assert "Postgres: PostgreSQL" in written and "command: `python -m bench" in written
    assert "| org pools (1,000) | 16 |" in written
    # issue 17: the minimal ledgered deduction is measured in the same run, with its target
    assert "| minimal ledgered deduction (1,000 rows) | 16 |" in written
    assert "vs minimal ledgered deduction (1,000 rows) (issue 17) | 16 |" in written


def test_P4_ledger_size_scenario_runs_at_two_small_sizes(tmp_path: Path) -> None:
    """`python -m bench --scenario ledger-size` can be rerun (issue 16, P4): tiny sizes here."""
    out = tmp_path / "ledger.md"
    run_module(
        "bench",
        "--quick",
        "--scenario",
        "ledger-size",
        "--ledger-sizes",
        "0.02,0.05",
        "--seconds",
        "1",
        "--out",
        str(out),
    )
    written = out.read_text()
    for size in ("0.02 M", "0.05 M"):
        assert f"| {size}: org pools with history (1,000) | 16 |" in written
        assert f"| {size}: cookbook consistency | 1 |" in written
        assert f"| {size}: VACUUM (FREEZE) again after a load | 1 |" in written
    assert "MISMATCH" not in written


def test_holds_profile_prints_statement_times_and_wal_per_call() -> None:
    """`python -m bench.holds_profile` can be rerun (issue 20): the figures of docs/performance.md."""
    printed = run_module("bench.holds_profile", "--seconds", "1")
    assert "deduction: tps =" in printed and "authorize + capture: tps =" in printed
    assert "public.capture_credits" in printed and "public.authorize_credits" in printed
    assert printed.count("WAL bytes per call: deduction") == 2
