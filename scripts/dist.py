"""`make dist`: the release artifacts, all named with the one release version.

    python scripts/dist.py [--out dist] [--only wheel,bundle,vsix]

* ``issuer-<version>-py3-none-any.whl``: the issuer (``uv build --wheel``);
  its dependencies are pinned, with hashes, in ``requirements/runtime.txt``.
* ``issuer-supabase-<version>.tar.gz``: ``supabase/`` as a deployment needs
  it (``config.toml``, ``migrations/``, ``functions/`` without their tests)
  under ``issuer-supabase-<version>/``, with a ``VERSION`` file;
  ``supabase db push --workdir issuer-supabase-<version>`` applies it.
  Byte-for-byte reproducible (sorted entries, fixed times and owners).
* ``softcodes-vscode-<version>.vsix`` (or whatever the extension is called):
  only when ``extension/package.json`` exists, by ``npm ci`` and its
  ``package`` script; its version must be the release version.
* ``SHA256SUMS`` of all of them.

The version is ``issuer.__version__`` (pyproject.toml reads the same).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("wheel", "bundle", "vsix")

#: Fixed metadata, so the same tree gives the same bundle bytes.
_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def release_version() -> str:
    text = (ROOT / "py" / "issuer" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise SystemExit("py/issuer/__init__.py: no __version__")
    return match.group(1)


def bundle_files() -> list[Path]:
    """What a deployment of the database and the edge functions needs, sorted."""
    supabase = ROOT / "supabase"
    files = [supabase / "config.toml", *sorted((supabase / "migrations").glob("*.sql"))]
    for path in sorted((supabase / "functions").rglob("*")):
        rel = path.relative_to(supabase / "functions")
        if (
            path.is_file()
            and not any(part.startswith(".") for part in rel.parts)
            and not path.name.endswith("_test.ts")
            and path.name != "test_support.ts"
        ):
            files.append(path)
    return files


def build_bundle(out: Path, version: str) -> Path:
    top = f"issuer-supabase-{version}"
    target = out / f"{top}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            info.mtime = _EPOCH
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))

        add("VERSION", f"{version}\n".encode())
        for path in bundle_files():
            add(path.relative_to(ROOT).as_posix(), path.read_bytes())
    with open(target, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return target


def build_wheel(out: Path, version: str) -> Path:
    # setuptools builds from build/lib and keeps whatever an earlier build left
    # there (a moved or deleted module would ship again): start from nothing.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [str(uv), "build", "--quiet", "--wheel", "--python", sys.executable, "--out-dir", str(out)],
        cwd=ROOT,
        check=True,
    )
    wheel = out / f"issuer-{version}-py3-none-any.whl"
    if not wheel.is_file():
        raise SystemExit(f"uv build did not write {wheel.name}")
    return wheel


def build_vsix(out: Path, version: str) -> Path | None:
    package = ROOT / "extension" / "package.json"
    if not package.is_file():
        print("dist: no extension/package.json yet, no .vsix", file=sys.stderr)
        return None
    manifest = json.loads(package.read_text(encoding="utf-8"))
    if manifest.get("version") != version:
        raise SystemExit(
            f"extension/package.json says {manifest.get('version')}, the release is {version}"
        )
    if "package" not in manifest.get("scripts", {}):
        raise SystemExit("extension/package.json has no `package` script")
    ext = ROOT / "extension"
    before = {p: p.stat().st_mtime_ns for p in ext.rglob("*.vsix") if "node_modules" not in p.parts}
    subprocess.run(["npm", "--prefix", str(ext), "ci", "--no-audit", "--no-fund"], check=True)
    subprocess.run(["npm", "--prefix", str(ext), "run", "package"], check=True)
    made = [
        p
        for p in ext.rglob("*.vsix")
        if "node_modules" not in p.parts and before.get(p) != p.stat().st_mtime_ns
    ]
    if len(made) != 1:
        raise SystemExit(f"npm run package: expected one new .vsix, found {made}")
    target = out / f"{manifest['name']}-{version}.vsix"
    shutil.copyfile(made[0], target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument(
        "--only", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS)
    )
    args = parser.parse_args(argv)
    kinds = set(args.only.split(","))
    if kinds - set(KINDS):
        parser.error(f"unknown kind(s): {sorted(kinds - set(KINDS))}")
    version = release_version()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    if "wheel" in kinds:
        made.append(build_wheel(out, version))
    if "bundle" in kinds:
        made.append(build_bundle(out, version))
    if "vsix" in kinds and (vsix := build_vsix(out, version)) is not None:
        made.append(vsix)
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in made)
    (out / "SHA256SUMS").write_text(sums, encoding="utf-8")
    for path in made:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
