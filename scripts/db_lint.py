"""`supabase db lint --fail-on error` (plpgsql_check) against a throwaway migrated database.

Part of `make lint`. Starts its own Postgres through issuer_dev.localdb (or uses
DATABASE_URL), creates a database, applies the bootstrap and the migrations,
runs the pinned Supabase CLI, and drops the database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid

from issuer_dev import localdb, migrations


def main() -> int:
    with localdb.postgres() as server:
        name = f"issuer_lint_{uuid.uuid4().hex[:8]}"
        url = localdb.create_database(server.url, name)
        try:
            migrations.apply_bootstrap(url)
            migrations.migrate(url)
            home = tempfile.mkdtemp(prefix="supabase-home-")
            exe = migrations.repo_root() / "node_modules" / ".bin" / "supabase"
            proc = subprocess.run(
                [
                    str(exe),
                    "db",
                    "lint",
                    "--db-url",
                    url + "?sslmode=disable",
                    "--schema",
                    "public,private",
                    "--level",
                    "warning",
                    "--fail-on",
                    "error",
                    "--workdir",
                    str(migrations.repo_root()),
                ],
                env={**os.environ, "HOME": home, "DO_NOT_TRACK": "1"},
                check=False,
                stdin=subprocess.DEVNULL,
            )
            return proc.returncode
        finally:
            localdb.drop_database(server.url, name)


if __name__ == "__main__":
    sys.exit(main())
