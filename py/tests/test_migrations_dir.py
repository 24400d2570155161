"""The harness finds the migrations outside a checkout too (issue 19, item 4).

``issuer_dev.migrations.repo_root()`` walks up from the module's file, so an
installed harness run outside a checkout had no migrations. Now
``--migrations-dir`` / ``ISSUER_MIGRATIONS_DIR`` name a folder of migrations or
the bundle ``make dist`` builds, and ``ISSUER_BOOTSTRAP_DIR`` the Supabase
stand-in. Here the harness is made to believe it is installed elsewhere
(its ``__file__`` in a temp dir, the working directory too), and migrates a
bare real database from the unpacked release bundle.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import psycopg
import pytest

from issuer import __version__
from issuer.cli import main
from issuer_dev import localdb, migrations

ROOT = migrations.repo_root()


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``issuer <args>`` in process: the exit code (output through capsys)."""
    monkeypatch.setattr(sys, "argv", ["issuer", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The harness as if installed in site-packages, run from a directory with no checkout."""
    fake = tmp_path / "site-packages" / "issuer_dev" / "migrations.py"
    fake.parent.mkdir(parents=True)
    monkeypatch.setattr(migrations, "__file__", str(fake))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in (migrations.MIGRATIONS_DIR_ENV, migrations.BOOTSTRAP_DIR_ENV, "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(migrations.MigrationError):
        migrations.repo_root()
    return tmp_path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """``make dist``'s Supabase bundle, built and unpacked: its top folder."""
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dist.py"), "--out", str(out), "--only", "bundle"],
        check=True,
        capture_output=True,
    )
    with tarfile.open(out / f"issuer-supabase-{__version__}.tar.gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    return tmp_path / "unpacked" / f"issuer-supabase-{__version__}"


def test_outside_a_checkout_without_a_path_the_error_says_what_to_set(
    outside_a_checkout: Path,
) -> None:
    with pytest.raises(migrations.MigrationError, match=migrations.MIGRATIONS_DIR_ENV):
        migrations.discover()
    with pytest.raises(migrations.MigrationError, match=migrations.BOOTSTRAP_DIR_ENV):
        migrations.bootstrap_dir()


def test_a_named_folder_that_does_not_exist_is_an_error(
    outside_a_checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(migrations.MIGRATIONS_DIR_ENV, str(outside_a_checkout / "nowhere"))
    with pytest.raises(migrations.MigrationError, match="not a directory"):
        migrations.migrations_dir()


def test_issuer_db_migrate_from_the_release_bundle_outside_a_checkout(
    outside_a_checkout: Path,
    bundle: Path,
    pg_server: localdb.PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkout = [m.version for m in migrations.discover(ROOT / "supabase" / "migrations")]
    # The bundle's top folder, its supabase/ and its migrations/ all name the same files.
    for given in (bundle, bundle / "supabase", bundle / "supabase" / "migrations"):
        assert [m.version for m in migrations.discover(given)] == checkout

    name = "issuer_bundle_migrate"
    url = localdb.create_database(pg_server.url, name)
    try:
        monkeypatch.setenv(migrations.BOOTSTRAP_DIR_ENV, str(ROOT / "sql" / "bootstrap"))
        code = _cli(
            monkeypatch,
            "db",
            "migrate",
            "--bootstrap",
            "--database-url",
            url,
            "--migrations-dir",
            str(bundle),
            "--json",
        )
        out = capsys.readouterr()
        assert code == 0, out.err
        assert f'"version": "{checkout[-1]}"' in out.out
        with psycopg.connect(url) as conn:
            versions = [
                r[0]
                for r in conn.execute(
                    "select version from supabase_migrations.schema_migrations order by 1"
                )
            ]
        assert versions == checkout
        # The same folder from the environment: nothing left to apply.
        monkeypatch.setenv(migrations.MIGRATIONS_DIR_ENV, str(bundle))
        code = _cli(monkeypatch, "db", "migrate", "--database-url", url)
        assert code == 0 and "up to date" in capsys.readouterr().out
    finally:
        localdb.drop_database(pg_server.url, name)
