"""A real streaming replica: a primary cluster and a hot standby made by ``pg_basebackup -R``.

Two throwaway Postgres clusters from the local binaries (``issuer_dev.localdb``,
run as the ``postgres`` user when we are root): the primary with
``wal_level=replica``, WAL senders and a ``replication`` line in
``pg_hba.conf``; the replica a base backup of it (``-R`` writes
``standby.signal`` and ``primary_conninfo``) started on another port with
``hot_standby=on``. One database, bootstrapped and migrated on the primary,
arrives on the replica by streaming replication, like everything after it.

Not from ``DATABASE_URL``: a replica is made of a cluster's files, so this
needs the Postgres binaries (``scripts/system-deps.sh`` installs them).

Tests use the ``replica_pair`` fixture (conftest.py, module scope), which is
:func:`running_replica_pair`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from issuer_dev import localdb, migrations

#: What the primary adds to the test settings (most are Postgres 15's defaults:
#: spelled out so the harness does not depend on them).
PRIMARY_SETTINGS = {
    **localdb.TEST_SETTINGS,
    "wal_level": "replica",
    "max_wal_senders": "5",
    "wal_keep_size": "256MB",
    # Commits reach the WAL (and so the WAL sender) when they return; fsync stays off.
    "synchronous_commit": "on",
}
REPLICA_SETTINGS = {
    **localdb.TEST_SETTINGS,
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    # The default (30 s) lets a long read delay replay; the tests want replay prompt.
    "max_standby_streaming_delay": "5s",
}
HBA_LINE = "host replication all 127.0.0.1/32 trust\n"


@dataclass
class ReplicaPair:
    primary: localdb.Cluster
    replica: localdb.Cluster
    dbname: str

    @property
    def primary_url(self) -> str:
        """Superuser URL of the migrated database on the primary."""
        return localdb.with_database(self.primary.url, self.dbname)

    @property
    def replica_url(self) -> str:
        """Superuser URL of the same database on the replica (read-only)."""
        return localdb.with_database(self.replica.url, self.dbname)

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            row = conn.execute("select pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.replica.url, autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "select pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
                if done and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica did not replay up to {target} in {timeout} s")
                time.sleep(0.05)

    def pause_replay(self) -> None:
        with psycopg.connect(self.replica.url, autocommit=True) as conn:
            conn.execute("select pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with psycopg.connect(self.replica.url, autocommit=True) as conn:
            conn.execute("select pg_wal_replay_resume()")

    def wait_received_beyond_replay(self, timeout: float = 30.0) -> None:
        """Until the replica has WAL it received but not replayed (it is behind)."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.replica.url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "select pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"
                ).fetchone()
                if row and row[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the replica received nothing beyond what it replayed")
                time.sleep(0.05)

    def stop_replica(self) -> None:
        self.replica._run(
            [str(self.replica.bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D",
             str(self.replica.data_dir)],
            timeout=120,
        )  # fmt: skip

    def start_replica(self) -> None:
        self.replica.start()

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()


def _allow_replication(cluster: localdb.Cluster) -> None:
    hba = cluster.data_dir / "pg_hba.conf"
    text = hba.read_text()
    if HBA_LINE.strip() not in text:
        hba.write_text(text + HBA_LINE)


def start_replica_pair(dbname: str = "issuer") -> ReplicaPair:
    """Start a primary with ``dbname`` migrated, and a streaming replica of it."""
    bindir = localdb.find_postgres_bindir()
    if bindir is None:
        raise localdb.NoPostgresError(
            "a streaming replica needs the Postgres binaries (pg_basebackup): "
            "apt-get install postgresql-15, or run scripts/system-deps.sh"
        )
    primary = localdb._throwaway_cluster(bindir, PRIMARY_SETTINGS)
    primary.init()
    _allow_replication(primary)
    primary.start()
    replica: localdb.Cluster | None = None
    try:
        url = localdb.create_database(primary.url, dbname)
        migrations.apply_bootstrap(url)
        migrations.migrate(url)

        parent = Path(tempfile.mkdtemp(prefix="issuer-pg-replica-"))
        os.chmod(parent, 0o755)  # the postgres user must traverse it
        replica = localdb.Cluster(
            bindir=bindir,
            data_dir=parent / "data",
            port=localdb.free_port(),
            settings=dict(REPLICA_SETTINGS),
        )
        replica._owns_parent = True
        replica.data_dir.mkdir()
        replica._chown(replica.data_dir)
        os.chmod(replica.data_dir, 0o700)
        done = replica._run(
            [
                str(bindir / "pg_basebackup"),
                "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(replica.data_dir),
                "-R",  # standby.signal + primary_conninfo
                "-X", "stream", "-c", "fast", "--no-sync",
            ],
            timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {done.stderr.strip()}")
        # The backup copied the primary's server.log; start the replica's afresh.
        (replica.data_dir / "server.log").unlink(missing_ok=True)
        replica.start()
        pair = ReplicaPair(primary=primary, replica=replica, dbname=dbname)
        with psycopg.connect(replica.url, autocommit=True) as conn:
            row = conn.execute("select pg_is_in_recovery()").fetchone()
            if not row or row[0] is not True:
                raise RuntimeError("the replica is not in recovery")
        pair.wait_caught_up()
        return pair
    except BaseException:
        if replica is not None:
            replica.stop()
        primary.stop()
        raise


@contextlib.contextmanager
def running_replica_pair(dbname: str = "issuer") -> Iterator[ReplicaPair]:
    """``with running_replica_pair() as pair:`` both clusters, always stopped afterwards."""
    pair = start_replica_pair(dbname)
    try:
        yield pair
    finally:
        pair.stop()
