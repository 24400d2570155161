"""Read the pins of requirements/*.txt (uv pip compile output)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(path: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker) of every pinned line of a uv/pip-compile file."""
    found: dict[str, tuple[str, str | None]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = (match[2], match[3])
    return found


def is_pin_line(line: str) -> bool:
    return _PIN.match(line) is not None


def pins_for_this_platform(path: Path) -> dict[str, str]:
    """name -> version of the pins whose marker holds here."""
    return {
        name: version
        for name, (version, marker) in pins(path).items()
        if marker is None or Marker(marker).evaluate()
    }
