#!/usr/bin/env bash
# Install the Debian packages the tests need, when they are missing.
# Run by `make setup` (and so by `make test`, `make demo`) and by .ci/run.
# As root it installs with apt-get; otherwise it says what to install.
set -euo pipefail

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Postgres server binaries: only when no DATABASE_URL is given.
if [ -z "${DATABASE_URL:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql-15)
fi
# initdb and pg_basebackup: the streaming-replica tests (py/tests/support/replica.py)
# build a primary and its replica from local binaries even when DATABASE_URL is set.
{ ls /usr/lib/postgresql/*/bin/initdb && ls /usr/lib/postgresql/*/bin/pg_basebackup; } \
    >/dev/null 2>&1 || missing+=(postgresql-15)
have_pkg postgresql-15-pgtap || missing+=(postgresql-15-pgtap)
command -v pg_prove >/dev/null 2>&1 || missing+=(libtap-parser-sourcehandler-pgtap-perl)
have_pkg postgresql-15-plpgsql-check || missing+=(postgresql-15-plpgsql-check)
# PgBouncer: the local stand-in for Supabase's pooler (Supavisor) in the
# pooler tests (py/tests/support/pooler.py, issue 16 P1).
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
# pgbench ships with postgresql-contrib on Debian 12 (postgresql-15 has it).
# Debian's Chromium drives the browser tests (Playwright cannot download its own here).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The real-VS-Code test (scripts/real-vscode.sh) compiles code-server's native modules.
for pkg in build-essential pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev; do
    have_pkg "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing system packages: ${missing[*]}" >&2
    echo "Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run again." >&2
    exit 1
fi

echo "Installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
