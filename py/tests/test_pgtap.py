"""Every pgTAP file in sql/tests, each in a fresh clone of the migrated template.

Each file is one test in the report; a failing assertion fails it (and the
test command). ``test_harness_fails_on_failing_assertion`` proves that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from issuer_dev.migrations import repo_root
from support.pgtap import run_pgtap_file

SQL_TESTS = sorted((repo_root() / "sql" / "tests").glob("*.sql"))


@pytest.mark.parametrize("path", SQL_TESTS, ids=[p.name for p in SQL_TESTS])
def test_pgtap_file(path: Path, new_db: Callable[[], str]) -> None:
    result = run_pgtap_file(new_db(), path)
    assert result.ok, result.output


def test_harness_fails_on_failing_assertion(tmp_path: Path, new_db: Callable[[], str]) -> None:
    bad = tmp_path / "00_deliberately_failing.sql"
    bad.write_text(
        "begin;\nselect plan(2);\nselect ok(true, 'this one passes');\n"
        "select is(1, 2, 'this one fails on purpose');\nselect * from finish();\nrollback;\n"
    )
    result = run_pgtap_file(new_db(), bad)
    assert not result.ok
    assert "this one fails on purpose" in result.output


def test_harness_passes_a_passing_file(tmp_path: Path, new_db: Callable[[], str]) -> None:
    good = tmp_path / "00_passing.sql"
    good.write_text(
        "begin;\nselect plan(1);\nselect ok(true, 'fine');\nselect * from finish();\nrollback;\n"
    )
    result = run_pgtap_file(new_db(), good)
    assert result.ok, result.output
