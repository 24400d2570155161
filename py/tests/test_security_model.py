"""docs/security-model.md defines every numbered behaviour the repository cites.

Code comments, test names (``test_T7_…``), pgTAP descriptions (``'C5: …'``) and
docs cite ids such as T7, C2 or O4. Each must be a ``### <id>`` heading in
docs/security-model.md, so that a maintainer can look it up without a design
file from outside the repository (issue 19, item 6).

An id is a family letter (T O A C D F L P R H) and a number of one or two
digits, standing alone: not inside a longer word or hex string (``0xF1``,
``sha256-…C1…``), though an underscore may join it (``test_T3_T8_…``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "docs" / "security-model.md"

#: Where ids are cited.
SCAN = ("py", "sql", "supabase", "docs", "bench", "scripts", "extension")
SCAN_FILES = ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")
#: Text we write; lock files and generated bundles carry base64 that could match.
SUFFIXES = frozenset({".py", ".sql", ".ts", ".js", ".mjs", ".md", ".html", ".toml", ".json"})
SKIP_NAMES = frozenset({"package-lock.json", "deno.lock", "openapi.json"})
SKIP_DIRS = frozenset({"node_modules", ".venv", "__pycache__", "dist", "out", ".vscode-test"})

ID = re.compile(r"(?<![A-Za-z0-9])([TOACDFLPRH])([0-9]{1,2})(?![A-Za-z0-9])")
HEADING = re.compile(r"^### ([TOACDFLPRH][0-9]{1,2})$", re.MULTILINE)


def defined_ids() -> list[str]:
    return HEADING.findall(MODEL.read_text(encoding="utf-8"))


def cited_files() -> Iterator[Path]:
    for name in SCAN:
        for path in sorted((ROOT / name).rglob("*")):
            rel = path.relative_to(ROOT)
            if (
                path.is_file()
                and path.suffix in SUFFIXES
                and path.name not in SKIP_NAMES
                and not SKIP_DIRS.intersection(rel.parts)
            ):
                yield path
    for name in SCAN_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name


def citations(text: str) -> Iterator[tuple[int, str]]:
    """(line number, id) of every id in ``text``."""
    for match in ID.finditer(text):
        yield text.count("\n", 0, match.start()) + 1, match.group(1) + match.group(2)


def test_every_cited_id_is_defined_in_security_model_md() -> None:
    defined = set(defined_ids())
    undefined = [
        f"{path.relative_to(ROOT)}:{line}: {ident}"
        for path in cited_files()
        for line, ident in citations(path.read_text(encoding="utf-8", errors="replace"))
        if ident not in defined
    ]
    assert not undefined, (
        "ids cited but not defined as a '### <id>' heading in docs/security-model.md:\n"
        + "\n".join(undefined)
    )


def test_the_scan_finds_what_it_should() -> None:
    """The check is not vacuous: it sees test names, pgTAP strings, ranges and SQL comments."""
    found = {
        (path.relative_to(ROOT).as_posix(), ident)
        for path in cited_files()
        for _, ident in citations(path.read_text(encoding="utf-8", errors="replace"))
    }
    assert ("py/tests/test_signing.py", "T8") in found  # test_T3_T8_refresh_…
    assert ("sql/tests/23_bad_input.sql", "C5") in found  # -- C5: bad input …
    assert ("py/issuer/flows/oauth.py", "O6") in found  # (O4-O6)
    assert any(p.startswith("supabase/migrations/") for p, _ in found)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("def test_T3_T8_refresh(", ["T3", "T8"]),
        ("SECURITY.md T1-T6, T10):", ["T1", "T6", "T10"]),
        ("'D4/D6: every policy'", ["D4", "D6"]),
        ("0xF1 sha256-AbC1x= F12b H264 T100 p50", []),
    ],
)
def test_what_counts_as_an_id(text: str, ids: list[str]) -> None:
    assert [ident for _, ident in citations(text)] == ids


def test_each_family_is_numbered_without_gaps_and_once() -> None:
    ids = defined_ids()
    assert len(ids) == len(set(ids)), "an id is defined twice"
    families: dict[str, list[int]] = {}
    for ident in ids:
        families.setdefault(ident[0], []).append(int(ident[1:]))
    assert set(families) == set("TOACDFLPRH")
    for family, numbers in families.items():
        assert sorted(numbers) == list(range(1, max(numbers) + 1)), family


def test_each_id_says_where_it_is_enforced_and_what_tests_it() -> None:
    text = MODEL.read_text(encoding="utf-8")
    sections = re.split(r"^(?=### )", text, flags=re.MULTILINE)[1:]
    for section in sections:
        ident = section.splitlines()[0].removeprefix("### ")
        body = section.split("\n## ")[0]
        assert "\n- Enforced:" in body, ident
        assert "\n- Tests:" in body, ident


def test_test_files_named_in_the_model_exist() -> None:
    text = MODEL.read_text(encoding="utf-8")
    named = set(re.findall(r"\b(test_[a-z_]+\.py)\b", text))
    named |= {f"sql/tests/{n}" for n in re.findall(r"\b([0-9]{2}_[a-z_]+\.sql)\b", text)}
    missing = [
        n
        for n in sorted(named)
        if not ((ROOT / "py" / "tests" / n).is_file() or (ROOT / n).is_file())
    ]
    assert not missing, missing
