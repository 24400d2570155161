"""Where the time and the WAL of a hold pair go, against a deduction (issue 20, H1).

``python -m bench.holds_profile [--before DIR] [--seconds S]``

For the migrations of this checkout (and, with ``--before DIR``, those in DIR,
e.g. ``git archive <rev> supabase | tar -x -C /tmp/x`` then
``/tmp/x/supabase/migrations``), on the benchmark cluster (``bench.pg.server``):

1. **statements**: the bench seed with the holds' steady state
   (``bench.holds.STEADY_SQL``), then pgbench, 1 client, S seconds each, of one
   deduction and of authorize + capture on the hot org pool, with
   ``pg_stat_statements`` (``track = all``: the RPCs and the statements inside
   them) and ``synchronous_commit = off``, so the times are the server's work,
   not fsync. Prints µs per call of the RPCs and their heaviest statements.
2. **wal**: WAL bytes per call (``pg_current_wal_insert_lsn``) of a deduction,
   an authorize and a capture, each its own transaction, over 1,000 org pools,
   twice.

Figures from it are in docs/performance.md (holds).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import deduct, holds, pg, seed
from bench.helper_costs import database
from bench.helper_costs import seed as pools_seed
from issuer_dev import localdb, migrations

WAL_POOLS = 1000


def statements(srv: pg.Server, name: str, folder: Path, seconds: int, workdir: Path) -> None:
    url = localdb.create_database(srv.url, name)
    migrations.apply_bootstrap(url)
    migrations.migrate(url, folder)
    seed.seed(url)
    with pg.connect(url) as conn:
        conn.execute(holds.STEADY_SQL)
        conn.execute("analyze")
        conn.execute("create extension if not exists pg_stat_statements")
        # The RPCs and the statements inside them; fsync out of the times.
        conn.execute(f"alter database {name} set pg_stat_statements.track = 'all'")
        conn.execute(f"alter database {name} set synchronous_commit = off")
    for label, script in (("deduction", deduct.ORG_HOT), ("authorize + capture", holds.HOLD_HOT)):
        with pg.connect(url) as conn:
            conn.execute("select pg_stat_statements_reset()")
        res = pg.pgbench(
            srv, name, script, clients=1, seconds=seconds, role="service_role", workdir=workdir
        )
        print(f"  {label}: tps = {res.tps:.1f}")
        with pg.connect(url) as conn:
            rows = conn.execute(
                "select calls, total_exec_time / calls * 1000, "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 90) "
                "from pg_stat_statements where calls > 100 and query not like '%%pg_stat%%' "
                "order by total_exec_time desc limit 6"
            ).fetchall()
        for calls, us, query in rows:
            print(f"    {us:7.1f} µs  x{calls:<6} {query}")


def wal(server_url: str, name: str, folder: Path) -> None:
    with database(server_url, name, folder) as conn:
        conn.execute(pools_seed(WAL_POOLS))
        conn.execute("checkpoint")

        def lsn() -> str:
            row = conn.execute("select pg_current_wal_insert_lsn()::text").fetchone()
            assert row is not None
            return str(row[0])

        def between(a: str, b: str) -> float:
            row = conn.execute("select pg_wal_lsn_diff(%s, %s)", (b, a)).fetchone()
            assert row is not None
            return float(row[0]) / WAL_POOLS

        for _ in range(2):
            a = lsn()
            for i in range(1, WAL_POOLS + 1):
                conn.execute(
                    "select * from public.deduct_credits_pooled(%s, 1, 'd', %s)", (f"u{i}", f"o{i}")
                )
            b = lsn()
            ids = []
            for i in range(1, WAL_POOLS + 1):
                row = conn.execute(
                    "select hold_id from public.authorize_credits(%s, 1, 'd', %s)",
                    (f"u{i}", f"o{i}"),
                ).fetchone()
                assert row is not None
                ids.append(row[0])
            c = lsn()
            for i, hold_id in enumerate(ids, 1):
                conn.execute("select * from public.capture_credits(%s, %s, 1)", (hold_id, f"u{i}"))
            d = lsn()
            ded, aut, cap = between(a, b), between(b, c), between(c, d)
            print(
                f"  WAL bytes per call: deduction {ded:.0f}, authorize {aut:.0f}, "
                f"capture {cap:.0f}; the pair = {(aut + cap) / ded:.2f} deductions"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, help="also profile the migrations in this folder")
    ap.add_argument("--seconds", type=int, default=5, help="pgbench seconds per load")
    args = ap.parse_args()
    folders = {"this checkout": migrations.migrations_dir()}
    if args.before:
        folders = {"before": args.before, **folders}
    with pg.server() as srv, tempfile.TemporaryDirectory() as tmp:
        for n, (label, folder) in enumerate(folders.items()):
            print(f"{label} ({folder})")
            statements(srv, f"profile_{n}", folder, args.seconds, Path(tmp))
            wal(srv.url, f"wal_{n}", folder)


if __name__ == "__main__":
    main()
