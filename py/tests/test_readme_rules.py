"""README.md's "Where is the rule that …" table names places that exist (issue 19).

Every row's last cell names files (`path`) and symbols (`name` next to
`in \\`path\\``); the test checks that each file or folder exists and that each
symbol is defined in the file the row names, so the table cannot drift from
the code without a red test.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\| (?P<rule>[^|]+) \| (?P<where>.+) \|$")
_DEFINED_IN = re.compile(
    r"`(?P<symbol>[A-Za-z_][\w.]*)`(?: and `(?P<other>[\w.]+)`)? in `(?P<path>[^`]+)`"
)
_PATH = re.compile(r"`(?P<path>(?:supabase|py|sql|schema|extension|docs|bench)/[^`]*)`")


def _rows() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Where is the rule that …", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = _ROW.match(line)
        if m and not m["rule"].startswith(("the rule that", "---")):
            rows.append((m["rule"].strip(), m["where"]))
    return rows


def _defines(path: Path, symbol: str) -> bool:
    name = symbol.rsplit(".", 1)[-1]
    text = path.read_text(encoding="utf-8")
    patterns = [
        rf"create function {re.escape(symbol)}\(",  # SQL: schema-qualified
        rf"^(?:async )?def {re.escape(name)}\(",
        rf"^class {re.escape(name)}\b",
        rf"^\s+def {re.escape(name)}\(",
        rf"^{re.escape(name)}(?:: [^=]+)? = ",
    ]
    return any(re.search(p, text, re.MULTILINE) for p in patterns)


def test_the_table_has_rows() -> None:
    assert len(_rows()) >= 20


def test_every_place_the_table_names_exists() -> None:
    problems = []
    for rule, where in _rows():
        for m in _PATH.finditer(where):
            if not (ROOT / m["path"].split("#")[0]).exists():
                problems.append(f"{rule}: no {m['path']}")
        for m in _DEFINED_IN.finditer(where):
            path = ROOT / m["path"]
            for named in filter(None, (m["symbol"], m["other"])):
                symbol = named
                if "." in symbol and not symbol.startswith(("public.", "private.")):
                    symbol = symbol.split(".", 1)[1]  # KeyRing.verify -> verify
                if not path.is_file() or not _defines(path, symbol):
                    problems.append(f"{rule}: {named} is not defined in {m['path']}")
    assert problems == []
