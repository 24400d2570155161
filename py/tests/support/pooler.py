"""A real PgBouncer in front of the test server: the local stand-in for Supavisor.

Supabase's pooled connection strings go through Supavisor, in transaction mode
(port 6543) or session mode. Debian's ``pgbouncer`` package (installed by
``scripts/system-deps.sh``) behaves the same way for what the issuer depends
on: in transaction mode consecutive statements of one client connection may
run on different server connections, so nothing may be kept in the session
(prepared statements, ``SET``), and startup parameters such as ``options`` are
refused (or, with ``ignore_startup_parameters = options``, silently dropped).

Usage (any test, any engineer)::

    with pgbouncer(server_url, mode="transaction") as bouncer:
        url = bouncer.url("issuer_test_x", user="postgres")

The configuration file, log and pid file live in a temporary directory the
helper writes; PgBouncer listens on a free loopback port and trusts the users
it is given (``auth_file``); it logs in to the server with the same user name
(and the password of ``server_url`` when it has one). As root it runs as the
``postgres`` user: PgBouncer refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from issuer_dev.localdb import free_port

PoolMode = Literal["transaction", "session"]

INSTALL_HINT = (
    "pgbouncer is not installed: run scripts/system-deps.sh (Debian: apt-get install pgbouncer)"
)


def find_pgbouncer() -> str:
    exe = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if exe is None:
        raise RuntimeError(INSTALL_HINT)
    return exe


@dataclass
class Pooler:
    """A running PgBouncer: ``url(dbname, user)`` is a connection string through it."""

    port: int
    mode: PoolMode
    directory: Path
    process: subprocess.Popen[bytes]

    def url(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{quote(user, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        try:
            return (self.directory / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: immediate shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _ini_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@contextmanager
def pgbouncer(
    server_url: str,
    *,
    mode: PoolMode = "transaction",
    users: Sequence[str] = ("postgres",),
    pool_size: int = 20,
    max_client_conn: int = 500,
    ignore_startup_parameters: Sequence[str] = (),
    timeout: float = 20.0,
) -> Iterator[Pooler]:
    """Start PgBouncer in front of the server of ``server_url``; stop it afterwards.

    ``ignore_startup_parameters=("options",)`` makes it drop the ``options``
    startup parameter silently (as a pooler that does not forward it would);
    by default PgBouncer refuses a connection that sends it.
    """
    exe = find_pgbouncer()
    parts = urlsplit(server_url)
    host = parts.hostname or "127.0.0.1"
    server_port = parts.port or 5432
    password = unquote(parts.password) if parts.password else None
    directory = Path(tempfile.mkdtemp(prefix="issuer-pgbouncer-"))
    run_as: str | None = None
    if os.geteuid() == 0:
        run_as = "postgres"
        pw = pwd.getpwnam(run_as)
        os.chown(directory, pw.pw_uid, pw.pw_gid)
    port = free_port()
    db_line = f"host={host} port={server_port}"
    if password:
        db_line += f" password={_ini_quote(password)}"
    config = "\n".join(
        [
            "[databases]",
            f"* = {db_line}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {directory / 'userlist.txt'}",
            f"pool_mode = {mode}",
            f"default_pool_size = {pool_size}",
            f"max_client_conn = {max_client_conn}",
            f"logfile = {directory / 'pgbouncer.log'}",
            f"pidfile = {directory / 'pgbouncer.pid'}",
            "server_login_retry = 1",
            f"ignore_startup_parameters = {','.join(ignore_startup_parameters)}",
            "",
        ]
    )
    (directory / "pgbouncer.ini").write_text(config)
    (directory / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in users))
    if run_as:
        for name in ("pgbouncer.ini", "userlist.txt"):
            os.chown(directory / name, pw.pw_uid, pw.pw_gid)
    process = subprocess.Popen(
        [exe, str(directory / "pgbouncer.ini")],
        user=run_as,
        group=run_as,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    pooler = Pooler(port=port, mode=mode, directory=directory, process=process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited early:\n{pooler.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not listen:\n{pooler.log()}") from None
                time.sleep(0.05)
        yield pooler
    finally:
        pooler.stop()
        shutil.rmtree(directory, ignore_errors=True)
