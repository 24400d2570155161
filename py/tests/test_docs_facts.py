"""Facts the docs state that a new user relies on (issue 28, the new-user pass).

* the quickstart's migration count is the number of files in supabase/migrations;
* operations.md says that `db push --db-url` to a Postgres without TLS needs
  `?sslmode=disable`, and gives `OAUTH_CLIENTS`' real default;
* database.md does not claim that something clears `is_current`;
* supabase/config.toml parses and holds `[auth.third_party.clerk]`, and
  docs/supabase-clerk.md (linked from README and the quickstart) says how
  members reach RLS with Clerk's session token;
* backend-integration.md tells a seed's `if (!deducted)` what to write instead.
"""

from __future__ import annotations

import json
import re
import tomllib

from issuer.flows.clients import DEFAULT_OAUTH_CLIENTS
from issuer_dev.migrations import repo_root

ROOT = repo_root()
DOCS = ROOT / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_quickstart_migration_count_is_current() -> None:
    count = len(list((ROOT / "supabase" / "migrations").glob("*.sql")))
    for page in (read("quickstart.md"), (ROOT / "README.md").read_text(encoding="utf-8")):
        for shown in re.findall(r"applied (\d+) migration", page):
            assert int(shown) == count, f"docs show {shown} migrations, there are {count}"


def test_db_push_to_a_local_postgres_names_sslmode_disable() -> None:
    ops = read("operations.md")
    assert "db push --db-url" in ops
    assert "?sslmode=disable" in ops


def test_oauth_clients_default_is_documented() -> None:
    row = next(
        line for line in read("operations.md").splitlines() if line.startswith("| `OAUTH_CLIENTS`")
    )
    default = row.split("|")[2].strip().strip("`")
    assert json.loads(default) == json.loads(DEFAULT_OAUTH_CLIENTS)


def test_database_md_does_not_claim_is_current_is_cleared() -> None:
    text = " ".join(read("database.md").split())
    assert "webhook sync clears `is_current`" not in text
    assert "Nothing in this repository changes it yet" in text


def test_config_toml_has_the_clerk_third_party_section() -> None:
    config = tomllib.loads((ROOT / "supabase" / "config.toml").read_text(encoding="utf-8"))
    clerk = config["auth"]["third_party"]["clerk"]
    assert isinstance(clerk["enabled"], bool)
    page = read("supabase-clerk.md")
    for needed in (
        "[auth.third_party.clerk]",
        '"role": "authenticated"',
        "auth.jwt() ->> 'sub'",
        "get_my_org_pools()",
        "never needs the Supabase JWT secret",
    ):
        assert needed in page, needed
    assert "docs/supabase-clerk.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "supabase-clerk.md" in read("quickstart.md")


def test_backend_integration_covers_a_boolean_deduct() -> None:
    page = read("backend-integration.md")
    assert "**Coming from a boolean deduct.**" in page
    assert "`if (!deducted)` becomes `if (!result.ok)`" in page
