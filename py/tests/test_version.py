"""One version for the release: the wheel, the Supabase bundle, the extension and GET /version.

The source is ``issuer.__version__`` (pyproject.toml reads it as a dynamic
version). The bundle's name and VERSION file are checked by test_dist.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

from issuer import __version__
from support.world import World

ROOT = Path(__file__).resolve().parents[2]


def versions_in_the_repository() -> dict[str, str]:
    """Every place that states the release version; the extension's once it exists."""
    found = {
        "py/issuer/__init__.py": __version__,
        "installed issuer metadata": metadata.version("issuer"),
    }
    for name in ("extension/package.json", "extension/package-lock.json"):
        path = ROOT / name
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))["version"]
    return found


def test_pyproject_takes_its_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "one source: issuer.__version__"
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "issuer.__version__"}


def test_every_version_in_the_repository_agrees() -> None:
    found = versions_in_the_repository()
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", __version__), __version__
    assert set(found.values()) == {__version__}, found


def test_the_changelog_has_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M), (
        f"CHANGELOG.md has no '## [{__version__}] - YYYY-MM-DD' section"
    )


def test_version_route_reports_the_release(world: World) -> None:
    r = world.client.get("/version")
    assert r.status_code == 200, r.text
    assert r.json() == {"version": __version__}
