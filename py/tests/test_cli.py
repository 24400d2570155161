"""The `issuer` command line: every command, its --help, and its errors.

Most tests run the console script's ``main()`` in-process (fast, same code
path as the installed script: argument parsing, error handling, exit codes);
a few run the real ``issuer`` executable to prove there is no traceback.
Database commands run against this module's real database as ``service_role``.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest

from issuer.cli import app, main
from issuer.settings import load_settings, read_signing_keys
from issuer.signing import KeyRing
from issuer_dev import localdb
from support.world import JWT_SECRET, World

ISSUER = str(Path(sys.executable).parent / "issuer")

COMMANDS = {
    "db": ["up", "migrate", "url", "down"],
    "serve": [],
    "demo": [],
    "token": ["mint", "decode", "verify"],
    "credits": ["grant", "deduct", "balance", "usage"],
    "keys": ["generate", "list", "promote", "retire"],
}


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """``cli("token", "mint", ..., env={...})``: main() in-process, exit code and output."""

    def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Run:
        for name in ("DATABASE_URL", "JWT_SECRET", "JWT_SIGNING_KEYS", "JWT_SIGNING_ALG"):
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        if stdin is not None:
            import io

            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        monkeypatch.setattr(sys, "argv", ["issuer", *args])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def one_line_error(run: Run) -> str:
    """User mistakes: exit 1 or 2, exactly one line on stderr, nothing like a traceback."""
    assert run.code != 0
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1, run.err
    assert "Traceback" not in run.err
    assert lines[0].startswith("error: ")
    return lines[0]


# -- the command tree ------------------------------------------------------------


def test_issuer_help_lists_every_command() -> None:
    """The installed script: `issuer --help` lists every command group and command."""
    top = subprocess.run([ISSUER, "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0, top.stderr
    for group in COMMANDS:
        assert f" {group} " in top.stdout, group


def test_group_help_lists_its_commands(cli: Callable[..., Run]) -> None:
    for group, commands in COMMANDS.items():
        if commands:
            run = cli(group, "--help")
            assert run.code == 0
            for command in commands:
                assert f" {command} " in run.out, (group, command)


def test_the_tree_has_no_command_without_a_test() -> None:
    """COMMANDS above is the full tree: a new command must be added here (and tested)."""
    import typer.main

    root = typer.main.get_command(app)
    tree = {
        name: sorted(getattr(cmd, "commands", {}) or {})
        for name, cmd in getattr(root, "commands", {}).items()
    }
    assert tree == {group: sorted(commands) for group, commands in COMMANDS.items()}


@pytest.mark.parametrize(
    "argv",
    [[group] for group in COMMANDS]
    + [[group, command] for group, commands in COMMANDS.items() for command in commands],
    ids=lambda argv: " ".join(argv),
)
def test_every_command_has_help(cli: Callable[..., Run], argv: list[str]) -> None:
    run = cli(*argv, "--help")
    assert run.code == 0, run.err
    assert "Usage: issuer " + " ".join(argv) in " ".join(run.out.split())


def test_usage_errors_are_one_line_without_traceback(cli: Callable[..., Run]) -> None:
    """A missing option, a bad choice, an unknown command: one line, exit 2."""
    done = subprocess.run([ISSUER, "credits", "deduct"], capture_output=True, text=True, timeout=60)
    line = one_line_error(Run(done.returncode, done.stdout, done.stderr))
    assert done.returncode == 2
    assert line == "error: Missing option '--amount'. (see `issuer credits deduct --help`)"
    for argv in (["keys", "generate", "--alg", "RS256"], ["db", "nope"], ["token", "mint"]):
        run = cli(*argv)
        assert run.code == 2
        assert "--help" in one_line_error(run)


# -- keys ------------------------------------------------------------------------


def test_keys_generate_es256_prints_a_private_jwk_the_key_ring_accepts(
    cli: Callable[..., Run],
) -> None:
    run = cli("keys", "generate", "--alg", "ES256", "--kid", "2026-01")
    assert run.code == 0, run.err
    jwk = json.loads(run.out)
    assert jwk["kid"] == "2026-01" and jwk["alg"] == "ES256" and "d" in jwk
    ring = KeyRing(hmac_secret=b"x" * 32, issuer="i", audience="a", es256_jwks=[jwk])
    assert ring.signing_kid == "2026-01"

    default = cli("keys", "generate", "--json").json()
    assert default["alg"] == "ES256" and default["jwk"]["kid"] == default["kid"]


def test_keys_generate_hs256_prints_a_secret_settings_accept(cli: Callable[..., Run]) -> None:
    run = cli("keys", "generate", "--alg", "hs256")
    assert run.code == 0
    secret = run.out.strip()
    assert len(secret) == 64
    assert load_settings({"JWT_SECRET": secret}).jwt_secret.get_secret_value() == secret
    assert cli("keys", "generate", "--alg", "HS256", "--json").json()["alg"] == "HS256"
    assert "HS256 tokens carry no kid" in one_line_error(
        cli("keys", "generate", "--alg", "HS256", "--kid", "x")
    )


def test_key_rotation_add_promote_retire(cli: Callable[..., Run], tmp_path: Path) -> None:
    """Publish before signing: a new key goes last, is promoted, the old one retired."""
    path = tmp_path / "keys.json"
    assert cli("keys", "generate", "--kid", "old", "--add-to", str(path)).code == 0
    added = cli("keys", "generate", "--kid", "new", "--add-to", str(path), "--json").json()
    assert [k["kid"] for k in added["keys"]] == ["old", "new"]
    assert added["keys"][0]["signs"] and not added["keys"][1]["signs"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "already there" in one_line_error(
        cli("keys", "generate", "--kid", "new", "--add-to", str(path))
    )

    assert "is the signing key" in one_line_error(cli("keys", "retire", "old", "--file", str(path)))
    assert cli("keys", "promote", "new", "--file", str(path)).code == 0
    assert [k["kid"] for k in read_signing_keys(str(path))] == ["new", "old"]
    assert cli("keys", "retire", "old", "--file", str(path)).code == 0
    listed = cli("keys", "list", "--json", env={"JWT_SIGNING_KEYS": str(path)}).json()
    assert [k["kid"] for k in listed["keys"]] == ["new"]
    assert "kid 'nope'" in one_line_error(cli("keys", "promote", "nope", "--file", str(path)))
    assert "no such file" in one_line_error(
        cli("keys", "list", "--file", str(tmp_path / "missing.json"))
    )
    assert "JWT_SIGNING_KEYS" in one_line_error(cli("keys", "list"))


# -- tokens ----------------------------------------------------------------------


def test_token_mint_decode_verify_round_trip(cli: Callable[..., Run]) -> None:
    env = {"JWT_SECRET": JWT_SECRET}
    run = cli("token", "mint", "--sub", "user_cli", "--email", "cli@example.com", env=env)
    assert run.code == 0, run.err
    token = run.out.strip()
    assert token.count(".") == 2

    decoded = cli("token", "decode", token)
    assert decoded.code == 0
    assert "UNVERIFIED" in decoded.out and "user_cli" in decoded.out
    as_json = cli("token", "decode", "--json", "-", stdin=token + "\n").json()
    assert as_json["verified"] is False
    assert as_json["header"]["typ"] == "at+jwt"
    assert as_json["claims"]["pool"] == "personal"

    verified = cli("token", "verify", token, "--json", env=env).json()
    assert verified["valid"] is True
    assert verified["claims"]["sub"] == "user_cli"
    assert verified["claims"]["email"] == "cli@example.com"
    assert "valid" in cli("token", "verify", f"Bearer {token}", env=env).out

    wrong_type = cli("token", "verify", token, "--type", "extension_long_lived", env=env)
    assert one_line_error(wrong_type) == "error: invalid token: wrong_type"
    other_key = cli("token", "verify", token, env={"JWT_SECRET": "another-secret-" + "y" * 40})
    assert one_line_error(other_key) == "error: invalid token: bad_signature"


def test_token_mint_es256_carries_the_signing_kid(cli: Callable[..., Run], tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    cli("keys", "generate", "--kid", "cli-kid", "--add-to", str(keys))
    env = {"JWT_SECRET": JWT_SECRET, "JWT_SIGNING_KEYS": str(keys)}
    token = cli("token", "mint", "--sub", "user_es", env=env).out.strip()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "cli-kid", "typ": "at+jwt"}
    assert cli("token", "verify", token, env=env).code == 0


def test_token_errors_are_one_line(cli: Callable[..., Run]) -> None:
    assert one_line_error(cli("token", "mint", "--sub", "u")) == "error: JWT_SECRET: is required"
    short = cli("token", "mint", "--sub", "u", env={"JWT_SECRET": "short"})
    assert "JWT_SECRET: must be at least 32 bytes" in one_line_error(short)
    assert "not a JWT" in one_line_error(cli("token", "decode", "abc"))
    assert "no token" in one_line_error(cli("token", "decode", "-", stdin=""))
    tampered = cli("token", "verify", "a.b.c", env={"JWT_SECRET": JWT_SECRET})
    assert one_line_error(tampered).startswith("error: invalid token:")


def test_token_mint_org_takes_attribution_from_the_database(
    cli: Callable[..., Run], world: World
) -> None:
    org = world.org(pool=10, name="Cli Org")
    member, suspended = world.user(), world.user()
    world.seat(org, member, role="admin")
    world.seat(org, suspended, status="suspended")
    env = {"JWT_SECRET": JWT_SECRET}
    run = cli(
        "token", "mint", "--sub", member, "--org", org, "--org-role", "org:admin",
        "--database-url", world.db_url, "--json", env=env,
    )  # fmt: skip
    assert run.code == 0, run.err
    claims = run.json()["claims"]
    expected = world.issuer.rpc.resolve_org_attribution(p_clerk_user_id=member, p_clerk_org_id=org)
    assert expected is not None
    for key, value in dataclasses.asdict(expected).items():
        assert claims[key] == (None if value is None else str(value)), key
    assert claims["org_role"] == "org:admin"
    verified = cli("token", "verify", run.json()["token"], "--json", env=env).json()
    assert verified["claims"]["seat_id"] == claims["seat_id"]

    refused = cli(
        "token", "mint", "--sub", suspended, "--org", org, "--database-url", world.db_url, env=env
    )
    assert "holds no active seat" in one_line_error(refused)


def test_token_mint_long_lived_is_stored_and_revocable(
    cli: Callable[..., Run], world: World
) -> None:
    user = world.user()
    env = {"JWT_SECRET": JWT_SECRET}
    minted = cli(
        "token", "mint", "--sub", user, "--type", "extension_long_lived",
        "--database-url", world.db_url, "--json", env=env,
    ).json()  # fmt: skip
    assert minted["token_id"]
    token = minted["token"]
    # The API accepts it (it is in extension_tokens) ...
    r = world.client.get(
        "/api/extension/auth/validate", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.json()["valid"] is True
    checked = cli("token", "verify", token, "--database-url", world.db_url, "--json", env=env)
    assert checked.json()["store_checked"] is True
    # ... and once revoked, neither the API nor the CLI does.
    assert world.issuer.rpc.call(
        "revoke_extension_token", p_token_id=minted["token_id"], p_clerk_user_id=user
    )
    revoked = cli("token", "verify", token, "--database-url", world.db_url, env=env)
    assert one_line_error(revoked) == "error: invalid token: revoked"


# -- credits ---------------------------------------------------------------------


def test_credits_grant_deduct_balance(cli: Callable[..., Run], world: World) -> None:
    org = world.org(name="Credits Org")
    alice = world.user()
    world.seat(org, alice)
    db = ("--database-url", world.db_url)

    granted = cli("credits", "grant", "--org", org, "--amount", "20", *db, "--json").json()
    assert granted["ok"] and granted["pool"] == "organization"
    assert Decimal(granted["balance"]) == 20
    assert cli("credits", "grant", "--user", alice, "--amount", "7.5", *db).code == 0

    spent = cli(
        "credits", "deduct", "--user", alice, "--org", org, "--amount", "2.5",
        "--idempotency-key", "cli-1", "--context", '{"model": "m"}', *db, "--json",
    ).json()  # fmt: skip
    assert spent["ok"] and not spent["replayed"] and Decimal(spent["balance"]) == Decimal("17.5")
    again = cli(
        "credits", "deduct", "--user", alice, "--org", org, "--amount", "2.5",
        "--idempotency-key", "cli-1", "--context", '{"model": "m"}', *db,
    )  # fmt: skip
    assert again.code == 0 and "replayed" in again.out
    assert world.pool_balance(org) == Decimal("17.5")

    personal = cli("credits", "deduct", "--user", alice, "--amount", "1", *db)
    assert personal.code == 0 and "personal pool" in personal.out

    shown = cli("credits", "balance", "--user", alice, "--org", org, *db, "--json").json()
    assert {(r["pool"], Decimal(r["balance"])) for r in shown} == {
        ("personal", Decimal("6.5")),
        ("organization", Decimal("17.5")),
    }
    text = cli("credits", "balance", "--org", org, *db)
    assert "Credits Org" in text.out and "17.5" in text.out
    assert world.consistency_problems() == []


def test_credits_refusals_exit_1_with_the_reason(cli: Callable[..., Run], world: World) -> None:
    org = world.org(pool=5)
    bob = world.user(personal=100)
    world.seat(org, bob)
    db = ("--database-url", world.db_url)

    short = cli("credits", "deduct", "--user", bob, "--org", org, "--amount", "6", *db, "--json")
    assert short.code == 1 and short.json()["reason"] == "insufficient_credits"
    assert "refused: insufficient_credits (balance 5)" in one_line_error(short)
    assert world.personal_balance(bob) == 100  # never a fallback

    world.set_seat(org, bob, "revoked")
    no_seat = cli("credits", "deduct", "--user", bob, "--org", org, "--amount", "1", *db)
    assert one_line_error(no_seat) == "error: refused: no_active_seat"
    unknown = cli("credits", "grant", "--user", "user_nobody", "--amount", "1", *db)
    assert one_line_error(unknown) == "error: refused: unknown_user"
    missing = cli("credits", "balance", "--org", "org_nobody", *db)
    assert "no organization org_nobody" in one_line_error(missing)


def test_credits_input_mistakes_are_one_line(cli: Callable[..., Run], world: World) -> None:
    user = world.user(personal=10)
    db = ("--database-url", world.db_url)
    assert "exactly one of --user and --org" in one_line_error(
        cli("credits", "grant", "--amount", "1", *db)
    )
    assert "is not a decimal number" in one_line_error(
        cli("credits", "grant", "--user", user, "--amount", "ten", *db)
    )
    assert "is not a decimal number" in one_line_error(
        cli("credits", "grant", "--user", user, "--amount", "NaN", *db)
    )
    too_precise = cli("credits", "grant", "--user", user, "--amount", "0.00001", *db)
    assert "p_amount" in one_line_error(too_precise)  # the database names the argument
    assert "JSON object" in one_line_error(
        cli("credits", "deduct", "--user", user, "--amount", "1", "--context", "[1]", *db)
    )
    cli("credits", "deduct", "--user", user, "--amount", "1", "--idempotency-key", "k", *db)
    reused = cli(
        "credits", "deduct", "--user", user, "--amount", "2", "--idempotency-key", "k", *db
    )
    assert "idempotency" in one_line_error(reused)
    assert "give --user, --org or both" in one_line_error(cli("credits", "balance", *db))


def test_credits_without_a_reachable_database_is_one_line(cli: Callable[..., Run]) -> None:
    url = f"postgresql://postgres@127.0.0.1:{localdb.free_port()}/nowhere"
    run = cli("credits", "balance", "--user", "u", "--database-url", url)
    assert one_line_error(run).startswith("error: cannot connect to the database")


def test_credits_on_an_unmigrated_database_says_so(
    cli: Callable[..., Run], pg_server: localdb.PostgresServer
) -> None:
    name = "issuer_cli_bare"
    url = localdb.create_database(pg_server.url, name)
    try:
        run = cli("credits", "balance", "--user", "u", "--database-url", url)
        assert "issuer db migrate" in one_line_error(run)
    finally:
        localdb.drop_database(pg_server.url, name)


# -- db --------------------------------------------------------------------------


def test_db_migrate_on_a_migrated_database_is_up_to_date(
    cli: Callable[..., Run], new_db: Callable[[], str]
) -> None:
    url = new_db()
    assert cli("db", "migrate", "--database-url", url, "--json").json() == {"applied": []}
    assert "up to date" in cli("db", "migrate", "--database-url", url).out


def test_db_up_url_down_manage_a_project_local_cluster(
    cli: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`issuer db up|url|down` on a project-local directory (here a temp dir, not .local/)."""
    if localdb.find_postgres_bindir() is None:
        pytest.skip("needs Postgres binaries on this machine")
    monkeypatch.setattr("issuer_dev.cli_db.local_dir", lambda: tmp_path / ".local")
    assert one_line_error(cli("db", "url")).startswith("error: the project-local database")
    try:
        up = cli("db", "up", "--json")
        assert up.code == 0, up.err
        info = up.json()
        assert info["started"] is True and len(info["applied"]) > 0
        url = cli("db", "url").out.strip()
        assert url == info["url"]
        with psycopg.connect(url) as conn:
            assert conn.execute("select count(*) from public.users").fetchone() == (0,)
        assert cli("db", "up", "--json").json()["started"] is False
    finally:
        down = cli("db", "down", "--purge")
    assert down.code == 0 and "stopped" in down.out
    assert cli("db", "url").code == 1
    assert "not running" in cli("db", "down").out
    assert not (tmp_path / ".local" / "postgres.json").exists()


# -- serve -----------------------------------------------------------------------
# A real `issuer serve` process is exercised by test_api_served.py.


def test_serve_refuses_a_bad_configuration_with_one_line(cli: Callable[..., Run]) -> None:
    run = cli("serve", "--port", "1", env={"JWT_SECRET": "too-short"})
    assert "JWT_SECRET: must be at least 32 bytes" in one_line_error(run)


# `issuer demo` is covered by test_demo.py.


# -- docs ------------------------------------------------------------------------


def test_operations_doc_lists_every_setting() -> None:
    """docs/operations.md documents every environment variable the settings read."""
    from issuer.settings import Settings
    from issuer_dev.migrations import repo_root

    doc = (repo_root() / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in doc]
    assert missing == []


# -- F5: bad input at the real CLI ---------------------------------------------------


def real_cli(*args: str, env: dict[str, str] | None = None) -> Run:
    """The installed ``issuer`` executable (its own process: no test harness around it)."""
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "JWT_"))}
    done = subprocess.run(
        [ISSUER, *args], capture_output=True, text=True, timeout=60, env={**base, **(env or {})}
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize(
    "argv",
    [
        ["credits", "balance", "--user", "u"],
        ["credits", "grant", "--user", "u", "--amount", "1"],
        ["credits", "deduct", "--user", "u", "--amount", "1"],
        ["credits", "usage", "--org", "org_x"],
        ["token", "mint", "--sub", "u", "--type", "extension_long_lived"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_F5_a_database_url_that_is_not_a_url_is_one_line(argv: list[str]) -> None:
    run = real_cli(*argv, env={"DATABASE_URL": "notaurl", "JWT_SECRET": JWT_SECRET})
    assert "URL" in one_line_error(run), run.err


def test_F5_token_mint_with_an_empty_sub_is_one_line() -> None:
    run = real_cli("token", "mint", "--sub", "", env={"JWT_SECRET": JWT_SECRET})
    assert "--sub" in one_line_error(run)
    assert run.out == "", "no token printed"


@pytest.mark.parametrize(
    "amount", ["1e3", "1E3", "\u0663", "\uff11", "1_000", " 1", "0x10", "1.5e1"]
)
def test_F5_amounts_are_ascii_decimals_without_exponent(amount: str, world: World) -> None:
    """'1e3' was taken as 1000 and the Arabic-Indic '٣' as 3; both are refused now."""
    user = world.user(personal=10)
    db = {"DATABASE_URL": world.db_url}
    for verb in ("grant", "deduct"):
        run = real_cli("credits", verb, "--user", user, "--amount", amount, env=db)
        assert "--amount" in one_line_error(run), run.err
    assert world.personal_balance(user) == Decimal(10), "nothing moved"


def test_F5_usage_of_an_unknown_org_exits_1_as_balance_does(world: World) -> None:
    db = {"DATABASE_URL": world.db_url}
    for argv in (["balance"], ["usage"], ["usage", "--by", "seat"]):
        run = real_cli("credits", *argv, "--org", "org_nope", env=db)
        assert run.code == 1, (argv, run)
        assert "org_nope" in one_line_error(run)
    org = world.org(pool=5)
    known = real_cli("credits", "usage", "--org", org, env=db)
    assert known.code == 0, known.err
    assert "Traceback" not in known.err
