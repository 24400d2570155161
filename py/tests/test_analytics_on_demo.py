"""docs/analytics.md runs as written on the database the demo leaves.

A new user runs `make demo`, then pastes the cookbook's queries: they name the
demo's ids (``org_2acme``, ``user_2alice``). Each ``sql`` block whose name line
says ``(rows on the demo)`` must return at least one row after the demo story;
every other block must run. test_analytics_cookbook.py checks exact results on
its own, smaller ledger.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from issuer_dev import localdb
from issuer_dev.demo.environment import demo_environment
from issuer_dev.demo.render import Narrator
from issuer_dev.demo.story import Story
from issuer_dev.migrations import repo_root

PAGE = repo_root() / "docs" / "analytics.md"
BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)
NAME = re.compile(r"^-- name: (\w+)(.*)$", re.M)


def blocks() -> list[tuple[str, bool, str]]:
    out = []
    for body in BLOCK.findall(PAGE.read_text(encoding="utf-8")):
        m = NAME.search(body)
        assert m, body
        out.append((m.group(1), "(rows on the demo)" in m.group(2), body))
    return out


BLOCKS = blocks()


@pytest.fixture(scope="module")
def demo_db(
    pg_server: localdb.PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    local = Path(tmp_path_factory.mktemp("demo")) / ".local"
    narrator = Narrator(Console(file=io.StringIO(), width=120))
    with demo_environment(local, server_url=pg_server.url) as env:
        report = Story(env, narrator).run()
        assert report.ok, report.failures
        yield env.db_url


def test_the_page_marks_what_the_demo_shows() -> None:
    marked = [name for name, rows, _ in BLOCKS if rows]
    assert len(marked) >= 15, marked


@pytest.mark.parametrize(("name", "rows", "query"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_cookbook_query_on_the_demo(name: str, rows: bool, query: str, demo_db: str) -> None:
    with psycopg.connect(demo_db, options="-c role=service_role") as conn:
        got = conn.execute(query).fetchall()
    if rows:
        assert got, f"{name}: the page says it shows rows on the demo; it returned none"
