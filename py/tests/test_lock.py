"""The Python lock: requirements/*.txt cover pyproject.toml, agree, and are what is installed.

`make setup` installs requirements/dev.txt exactly (uv pip sync, hashes
required); `make lock` rewrites the files after pyproject.toml changes. These
checks need no network: they read the files and this interpreter's packages.
A fresh venv from the lock giving the same `pip freeze` is `make verify-lock`;
the runtime lock alone is installed by test_dist.py.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.lockfile import is_pin_line, pins, pins_for_this_platform

ROOT = Path(__file__).resolve().parents[2]
REQ = ROOT / "requirements"


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(spec).name) for spec in specs}


def test_every_declared_dependency_is_pinned() -> None:
    dev = pins(REQ / "dev.txt")
    runtime = pins(REQ / "runtime.txt")
    missing_dev = (declared() | declared("dev")) - dev.keys()
    missing_runtime = declared() - runtime.keys()
    assert not missing_dev and not missing_runtime, (
        f"not in the lock: dev {sorted(missing_dev)}, runtime {sorted(missing_runtime)}; "
        "run `make lock` and commit requirements/"
    )


def test_runtime_and_bootstrap_pins_are_the_dev_pins() -> None:
    dev = pins(REQ / "dev.txt")
    for name in ("runtime.txt", "bootstrap.txt"):
        for package, (version, _) in pins(REQ / name).items():
            assert dev.get(package, ("absent",))[0] == version, (name, package)
    assert set(pins(REQ / "bootstrap.txt")) == {"uv"}
    # The runtime lock carries no test tool.
    assert (
        not {"pytest", "hypothesis", "ruff", "mypy", "playwright"}
        & pins(REQ / "runtime.txt").keys()
    )


def test_every_pin_has_a_hash() -> None:
    for path in sorted(REQ.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        for block in blocks:
            if is_pin_line(block.splitlines()[0]):
                assert "--hash=sha256:" in block, (path.name, block.splitlines()[0])


def test_uvicorn_is_not_held_to_a_minor_version() -> None:
    """Its security releases must be installable (issue 19).

    issuer.api.http_protocol relies on non-public uvicorn methods; instead of a
    pin, ``issuer serve`` probes its head limit at start-up and falls back to
    h11 with the same limit (test_http_protocol.py).
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [Requirement(s) for s in project["dependencies"] if Requirement(s).name == "uvicorn"]
    assert not any(c.operator in ("<", "<=", "==", "~=") for c in spec.specifier), str(spec)


def test_this_environment_is_exactly_the_dev_lock() -> None:
    """What `make setup` installed: every locked version, and nothing unlocked but the project."""
    locked = pins_for_this_platform(REQ / "dev.txt")
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    installed.pop("issuer", None)
    # The optional `embedded` extra (README: Postgres without system binaries) is not locked.
    for name in declared("embedded"):
        installed.pop(name, None)
    # venv's own seed, never in anyone's lock: pip sync leaves setuptools when present.
    for seed in ("setuptools", "wheel"):
        if seed not in locked:
            installed.pop(seed, None)
    wrong = {n: (installed.get(n), v) for n, v in locked.items() if installed.get(n) != v}
    extra = sorted(installed.keys() - locked.keys())
    assert not wrong and not extra, (
        f"installed != lock: {wrong}; unlocked: {extra} (run `make setup`)"
    )
