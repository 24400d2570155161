"""Apply ``supabase/migrations`` the way the Supabase CLI does.

Each ``YYYYMMDDHHMMSS_name.sql`` file runs in its own transaction and is
recorded in ``supabase_migrations.schema_migrations (version, statements,
name)``, the table ``supabase db push`` reads and writes, so either tool sees
what the other applied. A database holding a version the folder lacks is an
error: it was migrated from other sources and we will not guess.

``sql/bootstrap`` (the Supabase stand-in: roles, ``auth.*``, default
privileges) is applied only to local and test databases, never to a project.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = [
    "Migration",
    "MigrationError",
    "apply_bootstrap",
    "apply_sql_dir",
    "bootstrap_dir",
    "discover",
    "migrate",
    "migrations_dir",
    "repo_root",
    "split_statements",
]

_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration could not be applied, or the database disagrees with the folder."""


MIGRATIONS_DIR_ENV = "ISSUER_MIGRATIONS_DIR"
"""A folder of migrations, or an unpacked ``make dist`` bundle (``issuer-supabase-<version>/``)."""
BOOTSTRAP_DIR_ENV = "ISSUER_BOOTSTRAP_DIR"
"""The Supabase stand-in's folder (``sql/bootstrap`` of a checkout): not in the bundle."""


def repo_root() -> Path:
    """The repository root (where ``supabase/`` and ``sql/`` live).

    Found above this file (the harness run from a checkout), else above the
    working directory (the harness installed, run inside a checkout).
    """
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (start, *start.parents):
            if (parent / "supabase" / "migrations").is_dir() and (parent / "sql").is_dir():
                return parent
    raise MigrationError(
        "cannot find the repository root (supabase/migrations and sql/) above "
        f"{Path(__file__).parent} or the working directory"
    )


def _explicit(env: str, given: Path | str | None = None) -> Path | None:
    value = str(given) if given else os.environ.get(env)
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        where = value if given else f"{env}={value}"
        raise MigrationError(f"{where}: not a directory")
    return folder


def migrations_dir(given: Path | str | None = None) -> Path:
    """Where the migrations are: ``given``, else ``$ISSUER_MIGRATIONS_DIR``, else the checkout's.

    ``ISSUER_MIGRATIONS_DIR`` may name the folder of ``*.sql`` files, a
    ``supabase/`` folder, or an unpacked ``issuer-supabase-<version>`` bundle
    from ``make dist`` (its ``supabase/migrations``), so ``issuer db migrate`` and the demo work without a
    checkout.
    """
    folder = _explicit(MIGRATIONS_DIR_ENV, given)
    if folder is not None:
        if not any(folder.glob("*.sql")):
            for inside in (folder / "supabase" / "migrations", folder / "migrations"):
                if inside.is_dir():
                    return inside
        return folder
    try:
        return repo_root() / "supabase" / "migrations"
    except MigrationError as exc:
        raise MigrationError(
            f"{exc}; outside a checkout set {MIGRATIONS_DIR_ENV} to a migrations folder "
            "or to an unpacked issuer-supabase-<version> bundle (make dist)"
        ) from None


def bootstrap_dir() -> Path:
    """The Supabase stand-in: ``$ISSUER_BOOTSTRAP_DIR``, else the checkout's ``sql/bootstrap``."""
    folder = _explicit(BOOTSTRAP_DIR_ENV)
    if folder is not None:
        return folder
    try:
        return repo_root() / "sql" / "bootstrap"
    except MigrationError as exc:
        raise MigrationError(
            f"{exc}; the bootstrap (local and test databases only) is not in the "
            f"release bundle: set {BOOTSTRAP_DIR_ENV} to a checkout's sql/bootstrap"
        ) from None


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(folder: Path | None = None) -> list[Migration]:
    """Migrations in version order; a file with a malformed name is an error."""
    folder = migrations_dir(folder)
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: expected YYYYMMDDHHMMSS_name.sql")
        found.append(Migration(m["version"], m["name"], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version")
    return found


def split_statements(text: str) -> list[str]:
    """Split SQL into statements on top-level semicolons.

    Knows quotes, quoted identifiers, dollar quotes, line and block comments,
    which is what the Supabase CLI's parser needs for the same job. Empty
    statements (comments only) are dropped.
    """
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    dollar_tag = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*\$|\$\$")
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            buf.append(text[i:j])
            i = j
        elif c == "/" and text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            buf.append(text[i:j])
            i = j
        elif c in ("'", '"'):
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            buf.append(text[i : j + 1])
            i = j + 1
        elif c == "$" and (m := dollar_tag.match(text, i)):
            tag = m.group(0)
            j = text.find(tag, m.end())
            j = n if j < 0 else j + len(tag)
            buf.append(text[i:j])
            i = j
        elif c == ";":
            stmt = "".join(buf).strip()
            if _has_code(stmt):
                out.append(stmt)
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    stmt = "".join(buf).strip()
    if _has_code(stmt):
        out.append(stmt)
    return out


def _has_code(stmt: str) -> bool:
    no_line = re.sub(r"--[^\n]*", "", stmt)
    no_block = re.sub(r"/\*.*?\*/", "", no_line, flags=re.S)
    return bool(no_block.strip())


def apply_sql_dir(url: str, folder: Path) -> list[Path]:
    """Run every ``*.sql`` of a folder in name order, each in one transaction."""
    applied: list[Path] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for path in sorted(folder.glob("*.sql")):
            with conn.transaction():
                conn.execute(path.read_text(encoding="utf-8"))
            applied.append(path)
    return applied


def apply_bootstrap(url: str) -> list[Path]:
    """The Supabase stand-in (``sql/bootstrap``); local and test databases only."""
    return apply_sql_dir(url, bootstrap_dir())


_HISTORY_DDL = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
"""


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    exists = conn.execute(
        "select to_regclass('supabase_migrations.schema_migrations') is not null"
    ).fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(
        "select version from supabase_migrations.schema_migrations order by version"
    ).fetchall()
    return [str(r[0]) for r in rows]


def migrate(url: str, folder: Path | None = None) -> list[Migration]:
    """Apply pending migrations in version order; returns those applied now."""
    migrations = discover(folder)
    known = {m.version for m in migrations}
    applied_now: list[Migration] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_HISTORY_DDL)
        done = set(applied_versions(conn))
        unknown = sorted(done - known)
        if unknown:
            raise MigrationError(
                "the database has migration versions that supabase/migrations lacks: "
                + ", ".join(unknown)
                + " (pull them into the folder or repair the history first)"
            )
        for mig in migrations:
            if mig.version in done:
                continue
            statements = split_statements(mig.text)
            try:
                with conn.transaction():
                    for stmt in statements:
                        conn.execute(stmt)
                    conn.execute(
                        sql.SQL(
                            "insert into supabase_migrations.schema_migrations "
                            "(version, statements, name) values (%s, %s, %s)"
                        ),
                        (mig.version, statements, mig.name),
                    )
            except psycopg.Error as exc:
                raise MigrationError(f"{mig.path.name}: {exc}") from exc
            applied_now.append(mig)
    return applied_now
