"""The benchmark's own Postgres: a throwaway cluster with durable settings.

Started through :mod:`issuer_dev.localdb` (never ``DATABASE_URL``: the figures
must come from a server whose settings we know), with ``fsync`` and
``synchronous_commit`` on. ``pg_stat_statements`` is preloaded so round trips
and per-statement times can be read from the server side.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from issuer_dev import localdb, migrations

#: What the benchmark adds to localdb.DURABLE_SETTINGS (none of it touches durability).
EXTRA_SETTINGS: dict[str, str] = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "top",
}

SHOWN_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
    "max_wal_size",
    "checkpoint_timeout",
    "shared_preload_libraries",
)


def settings() -> dict[str, str]:
    return {**localdb.DURABLE_SETTINGS, **EXTRA_SETTINGS}


def pgbench_path() -> Path:
    bindir = localdb.find_postgres_bindir()
    candidates = [bindir / "pgbench"] if bindir else []
    found = shutil.which("pgbench")
    if found:
        candidates.append(Path(found))
    candidates.append(Path("/usr/lib/postgresql/15/bin/pgbench"))
    for c in candidates:
        if c.exists():
            return c
    raise RuntimeError("pgbench not found (Debian: apt-get install postgresql-15)")


@dataclass
class Server:
    """A running benchmark cluster and what we know about it."""

    handle: localdb.PostgresServer
    version: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    cpus: int = 0

    @property
    def url(self) -> str:
        return self.handle.url

    def host_port(self) -> tuple[str, str]:
        m = re.match(r"postgresql://[^@]*@([^:/]+):(\d+)/", self.url)
        if not m:
            raise RuntimeError(f"cannot parse {self.url}")
        return m.group(1), m.group(2)


@contextlib.contextmanager
def server() -> Iterator[Server]:
    handle = localdb.start_postgres(settings=settings(), use_env=False)
    try:
        srv = Server(handle)
        with psycopg.connect(handle.url, autocommit=True) as conn:
            row = conn.execute("select version()").fetchone()
            srv.version = str(row[0]) if row else "?"
            for name in SHOWN_SETTINGS:
                r = conn.execute("select current_setting(%s)", (name,)).fetchone()
                srv.settings[name] = str(r[0]) if r else "?"
        import os

        srv.cpus = os.cpu_count() or 0
        yield srv
    finally:
        handle.stop()


def new_database(srv: Server, name: str) -> str:
    """A database with the Supabase stand-in and every migration applied."""
    url = localdb.create_database(srv.url, name)
    migrations.apply_bootstrap(url)
    migrations.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
    return url


def connect(url: str, **kw: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, **kw)


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


# -- pgbench --------------------------------------------------------------------


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    latency_ms: float
    aborted: bool
    output: str


class PgbenchError(RuntimeError):
    pass


def pgbench(
    srv: Server,
    dbname: str,
    script: str,
    *,
    clients: int,
    seconds: float,
    role: str | None = None,
    mode: str = "prepared",
    workdir: Path,
) -> PgbenchResult:
    """Run one pgbench custom script; ``role`` becomes ``-c role=...`` (PGOPTIONS)."""
    host, port = srv.host_port()
    path = workdir / f"script-{abs(hash(script)) % 10**10}.sql"
    path.write_text(script)
    threads = 1 if clients == 1 else min(clients, max(2, srv.cpus))
    env = {"PGOPTIONS": f"-c role={role}" if role else "", "PATH": "/usr/bin:/bin"}
    cmd = [
        str(pgbench_path()),
        "-h",
        host,
        "-p",
        port,
        "-U",
        "postgres",
        "-n",
        "-M",
        mode,
        "-c",
        str(clients),
        "-j",
        str(threads),
        "-T",
        str(max(1, round(seconds))),
        "-f",
        str(path),
        dbname,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
    out = proc.stdout + proc.stderr
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    if proc.returncode not in (0, 2) or not tps or not done:
        raise PgbenchError(f"pgbench failed ({proc.returncode}):\n{out[-3000:]}")
    return PgbenchResult(
        tps=float(tps.group(1)),
        transactions=int(done.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        latency_ms=float(lat.group(1)) if lat else 0.0,
        aborted=proc.returncode == 2 or "aborted" in out,
        output=out,
    )


# -- wait events ------------------------------------------------------------------


class WaitSampler:
    """Samples ``pg_stat_activity`` every ``interval`` s while a load runs.

    Counts, per sample, what each active pgbench backend is doing: a wait
    event (``Lock:transactionid`` = queued behind the row lock holder,
    ``IO:WALSync`` = flushing the commit, ``LWLock:WALWrite`` = waiting for
    someone else's flush ...) or ``CPU`` (active, no wait event).
    """

    def __init__(self, url: str, interval: float = 0.01) -> None:
        self.url = url
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="wait-sampler")

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with connect(self.url) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "select coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                    "from pg_stat_activity "
                    "where application_name = 'pgbench' and state = 'active'"
                ).fetchall()
                for (event,) in rows:
                    self.counts[str(event)] += 1
                self.samples += 1
                time.sleep(self.interval)

    def top(self, n: int = 4) -> str:
        total = sum(self.counts.values())
        if not total:
            return "no samples"
        parts = [f"{e} {100 * c / total:.0f}%" for e, c in self.counts.most_common(n)]
        return ", ".join(parts)


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (0, 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the machine's CPU time spent busy between two cpu_times() readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


# -- statistics ----------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def spread_note(values: list[float], *, tolerance: float = 0.15) -> str:
    """ "runs min..max" when the runs disagree by more than ``tolerance`` of the median."""
    if len(values) < 2:
        return ""
    m = median(values)
    lo, hi = min(values), max(values)
    if m and (hi - lo) / m > tolerance:
        return f"runs {fmt(lo)}..{fmt(hi)}"
    return ""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]
