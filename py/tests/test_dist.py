"""A release installs and runs from its artifacts alone (issue 21, `make dist`).

``scripts/dist.py`` (what `make dist` runs) builds the wheel and the Supabase
bundle into a temp dir. Then, with no checkout around it (cwd an empty temp
dir, no PYTHONPATH, no VIRTUAL_ENV):

* a fresh virtualenv gets ``requirements/runtime.txt`` (hashes required) and
  the wheel, and holds exactly those versions;
* ``issuer --help`` runs;
* a database that has only the Supabase stand-in is migrated from the
  unpacked bundle by the real Supabase CLI (``supabase db push``);
* ``issuer serve`` from that venv mints a token for a seated user and charges
  one deduction to the org's pool through HTTP; ``GET /version`` names the
  release.

Only Clerk is faked (the fake in the test process); the database, the CLI,
the server process and HTTP are real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from issuer import __version__
from issuer_dev import localdb, migrations
from issuer_dev.fake_clerk import FakeClerk
from support import credits
from support.lockfile import pins_for_this_platform
from support.supabase_cli import cli_url, run_supabase
from support.world import issuer_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOP = f"issuer-supabase-{__version__}"

#: The development harness (issue 19 item 4): local Postgres, the migration
#: runner, the fake Clerk, the demo, `issuer db`. It lives in py/issuer_dev,
#: which the runtime wheel leaves out; a checkout's `make setup` adds it.
HARNESS = (
    "issuer_dev/",
    "issuer/localdb.py",
    "issuer/migrations.py",
    "issuer/dev/",
    "issuer/demo/",
)


def outside_env() -> dict[str, str]:
    """This process's environment without anything that points into the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return env


@dataclass
class Release:
    wheel: Path
    bundle: Path
    venv: Path
    elsewhere: Path  # an empty directory, the cwd of everything run from the venv

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def issuer(self) -> Path:
        return self.venv / "bin" / "issuer"

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.elsewhere,
            env=outside_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    tmp = tmp_path_factory.mktemp("release")
    out = tmp / "dist"
    built = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "dist.py"),
            "--out",
            str(out),
            "--only",
            "wheel,bundle",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = out / f"issuer-{__version__}-py3-none-any.whl"
    bundle = out / f"{TOP}.tar.gz"
    assert wheel.is_file() and bundle.is_file(), sorted(p.name for p in out.iterdir())

    # A fresh venv from the base interpreter; uv (from the dev lock) installs into it.
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    uv = Path(sys.executable).parent / "uv"
    python = str(venv / "bin" / "python")
    for args in (
        ["--require-hashes", "-r", str(ROOT / "requirements" / "runtime.txt")],
        ["--no-deps", str(wheel)],
    ):
        done = subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", python, *args],
            env=outside_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return Release(wheel, bundle, venv, elsewhere)


# -- the artifacts ---------------------------------------------------------------------------


def test_the_wheel_holds_the_package_and_nothing_else(release: Release) -> None:
    with zipfile.ZipFile(release.wheel) as whl:
        names = {n for n in whl.namelist() if not n.startswith(f"issuer-{__version__}.dist-info/")}
        metadata = whl.read(f"issuer-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata
    source = {
        p.relative_to(ROOT / "py").as_posix()
        for p in (ROOT / "py" / "issuer").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert names == source, (sorted(names - source), sorted(source - names))
    assert {"issuer/py.typed", "issuer/templates/base.html", "issuer/static/issuer.css"} <= names
    assert not any(n.startswith(("tests/", "support/", "bench/")) for n in names)
    assert not [n for n in names if n.startswith(HARNESS)], "the harness is in the wheel"


def test_the_bundle_is_supabase_as_deployed_and_reproducible(
    release: Release, tmp_path: Path
) -> None:
    with tarfile.open(release.bundle) as tar:
        members = {m.name: m for m in tar.getmembers()}
        version = tar.extractfile(f"{TOP}/VERSION")
        assert version is not None and version.read().decode() == f"{__version__}\n"
    expected = {
        f"{TOP}/{p.relative_to(ROOT).as_posix()}"
        for p in [
            ROOT / "supabase" / "config.toml",
            *(ROOT / "supabase" / "migrations").glob("*.sql"),
            *(ROOT / "supabase" / "functions").rglob("*.ts"),
            ROOT / "supabase" / "functions" / "deno.json",
            ROOT / "supabase" / "functions" / "deno.lock",
        ]
        if not p.name.endswith("_test.ts") and p.name != "test_support.ts"
    } | {f"{TOP}/VERSION"}
    assert set(members) == expected, (
        sorted(set(members) - expected),
        sorted(expected - set(members)),
    )
    assert all(m.mtime == members[f"{TOP}/VERSION"].mtime and m.uid == 0 for m in members.values())
    # The same tree gives the same bytes.
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "dist.py"),
            "--out",
            str(tmp_path),
            "--only",
            "bundle",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / release.bundle.name).read_bytes() == release.bundle.read_bytes()


# -- the installed wheel, no checkout around it ----------------------------------------------


def test_the_venv_holds_exactly_the_runtime_lock(release: Release) -> None:
    listed = release.run(
        release.python,
        "-c",
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'], d.version)",
    )
    assert listed.returncode == 0, listed.stderr
    from packaging.utils import canonicalize_name

    installed = dict(
        (canonicalize_name(name), version)
        for name, version in (line.split() for line in listed.stdout.splitlines())
    )
    assert installed.pop("issuer") == __version__
    assert installed == pins_for_this_platform(ROOT / "requirements" / "runtime.txt")


def test_issuer_help_runs_from_the_installed_wheel(release: Release) -> None:
    where = release.run(release.python, "-c", "import issuer; print(issuer.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(release.venv), where.stdout
    helped = release.run(release.issuer, "--help")
    assert helped.returncode == 0, helped.stdout + helped.stderr
    for verb in ("serve", "token", "credits", "keys"):
        assert f"│ {verb} " in helped.stdout, helped.stdout
    # The development verbs need the harness, which the wheel does not carry.
    for verb in ("db", "demo"):
        assert f"│ {verb} " not in helped.stdout, helped.stdout
    harness = release.run(release.python, "-c", "import issuer_dev")
    assert harness.returncode != 0 and "ModuleNotFoundError" in harness.stderr


@pytest.fixture
def bundle_db(pg_server: localdb.PostgresServer, release: Release, tmp_path: Path) -> Iterator[str]:
    """A database with only the Supabase stand-in, migrated from the unpacked bundle by the CLI."""
    name = f"issuer_dist_{uuid.uuid4().hex[:10]}"
    url = localdb.create_database(pg_server.url, name)
    try:
        migrations.apply_bootstrap(url)  # what a new Supabase project has: roles, auth.*
        with tarfile.open(release.bundle) as tar:
            tar.extractall(tmp_path, filter="data")
        pushed = run_supabase(
            "db", "push", "--db-url", cli_url(url), "--yes", workdir=tmp_path / TOP
        )
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        shipped = sorted(
            p.name.split("_")[0] for p in (tmp_path / TOP / "supabase" / "migrations").glob("*.sql")
        )
        with psycopg.connect(url) as conn:
            assert migrations.applied_versions(conn) == shipped
        yield url
    finally:
        localdb.drop_database(pg_server.url, name)


def test_issuer_serve_from_the_wheel_mints_and_charges_over_http(
    release: Release, bundle_db: str, fake_clerk: FakeClerk
) -> None:
    org, user = f"org_{uuid.uuid4().hex[:10]}", f"user_{uuid.uuid4().hex[:10]}"
    with credits.connect_service_role(bundle_db) as conn:
        credits.create_org(conn, org, name="Release Inc")
        credits.create_subscription(conn, org, pool_credits=10)
        credits.create_seat(conn, org, user, role="member")
    fake_clerk.add_user(user, email=f"{user}@example.test")
    fake_clerk.add_organization(org, "Release Inc")
    fake_clerk.add_membership(user, org, role="org:member")

    port = localdb.free_port()
    base = f"http://127.0.0.1:{port}"
    log = release.elsewhere / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(release.issuer), "serve", "--port", str(port), "--log-level", "warning"],
            cwd=release.elsewhere,
            env={**outside_env(), **issuer_env(bundle_db, fake_clerk)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text(errors="replace")
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.1)

            assert http.get("/version").json() == {"version": __version__}
            session = fake_clerk.session_token(user, org_id=org)
            minted = http.post(
                "/api/extension-token/generate",
                json={"name": "release", "clerk_org_id": org},
                headers={"Authorization": f"Bearer {session}"},
            )
            assert minted.status_code == 201, minted.text
            charged = http.post(
                "/api/extension/usage",
                json={"amount": "2.5", "description": "release check"},
                headers={
                    "Authorization": f"Bearer {minted.json()['token']}",
                    "Idempotency-Key": "release-1",
                },
            )
            assert charged.status_code == 200, charged.text
            assert charged.json()["remaining"] == 7.5
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    with credits.connect_service_role(bundle_db) as conn:
        assert credits.pool_balance(conn, org) == Decimal("7.5")
        assert credits.consistency_problems(conn) == []
