"""``issuer keys``: new signing keys, and the ES256 key file's order for rotation.

``JWT_SIGNING_KEYS`` is a JWKS file (or inline JSON): the first key signs,
every key verifies and is published at ``/.well-known/jwks.json``. Rotation
(docs/operations.md) publishes before it signs:

1. ``issuer keys generate --kid NEW --add-to keys.json``: NEW is added last
   (published, verifying, not signing); deploy; wait for JWKS caches.
2. ``issuer keys promote NEW --file keys.json``: NEW moves first and signs; deploy.
3. When the old key's last token has expired: ``issuer keys retire OLD --file keys.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from issuer.cli._common import CliError, console, emit_json, err_console
from issuer.settings import read_signing_keys
from issuer.signing import generate_es256_jwk, generate_hs256_secret

app = typer.Typer(
    help="Generate signing keys; order the ES256 key file (rotation).", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
FileOption = Annotated[
    Path,
    typer.Option(
        "--file",
        help="The JWKS file JWT_SIGNING_KEYS points at.",
        show_default=False,
        dir_okay=False,
    ),
]


class Alg(StrEnum):
    ES256 = "ES256"
    HS256 = "HS256"


def out(text: str, *, style: str | None = None) -> None:
    """One line on stdout (rich markup), never wrapped mid-word."""
    console.print(text, style=style, highlight=False, soft_wrap=True)


def err(text: str) -> None:
    """One line on stderr (hints, so stdout stays clean for scripts)."""
    err_console.print(text, highlight=False, soft_wrap=True)


def default_kid() -> str:
    """``YYYY-MM-DD-xxxx``: sorts by date, unique enough for a key set."""
    return f"{datetime.now(UTC):%Y-%m-%d}-{secrets.token_hex(2)}"


def read_keys(path: Path) -> list[dict[str, Any]]:
    """The private JWKs of a key file, validated like JWT_SIGNING_KEYS at start-up."""
    if not path.exists():
        raise CliError(f"{path}: no such file")
    try:
        return read_signing_keys(str(path))
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None


def write_keys(path: Path, keys: list[dict[str, Any]]) -> None:
    """Replace the file atomically, readable by its owner only (it holds private keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"keys": keys}, out, indent=2)
            out.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _summary(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"kid": key["kid"], "position": i + 1, "signs": i == 0, "verifies": True}
        for i, key in enumerate(keys)
    ]


def _print_order(path: Path, keys: list[dict[str, Any]]) -> None:
    for i, key in enumerate(keys):
        role = "signs and verifies" if i == 0 else "verifies (published, not signing)"
        out(f"  {i + 1}. {key['kid']}: {role}")
    out(f"  file: {path}", style="dim")


@app.command()
def generate(
    alg: Annotated[
        Alg,
        typer.Option(
            "--alg",
            help="ES256: a private JWK for JWT_SIGNING_KEYS. HS256: a secret for JWT_SECRET.",
            case_sensitive=False,
        ),
    ] = Alg.ES256,
    kid: Annotated[
        str | None,
        typer.Option("--kid", help="Key id (ES256). Default: today's date and 4 hex digits."),
    ] = None,
    add_to: Annotated[
        Path | None,
        typer.Option(
            "--add-to",
            help=(
                "ES256: append the key to this JWKS file (created if missing, mode 0600) "
                "instead of printing it. It goes last: published, not signing yet."
            ),
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Generate a new signing key: an ES256 private JWK with kid, or an HS256 secret."""
    if alg is Alg.HS256:
        if kid is not None or add_to is not None:
            raise CliError("--kid and --add-to are for ES256 keys; HS256 tokens carry no kid")
        secret = generate_hs256_secret()
        if json_out:
            emit_json({"alg": "HS256", "secret": secret})
        else:
            typer.echo(secret)
            err("[dim]set it as JWT_SECRET (48 random bytes, base64url)[/]")
        return

    key_id = kid if kid is not None else default_kid()
    if not key_id.strip() or key_id != key_id.strip():
        raise CliError("--kid must be non-empty, without surrounding spaces")
    jwk = generate_es256_jwk(key_id)
    if add_to is None:
        if json_out:
            emit_json({"alg": "ES256", "kid": key_id, "jwk": jwk})
        else:
            typer.echo(json.dumps(jwk, indent=2))
            err(
                "[dim]a private key: add it to the JWKS file JWT_SIGNING_KEYS points at, "
                "or use --add-to FILE[/]"
            )
        return

    keys = read_keys(add_to) if add_to.exists() else []
    if any(k["kid"] == key_id for k in keys):
        raise CliError(f"{add_to}: kid {key_id!r} is already there")
    keys.append(jwk)
    write_keys(add_to, keys)
    if json_out:
        emit_json({"file": str(add_to), "added": key_id, "keys": _summary(keys)})
        return
    out(f"added {key_id} to {add_to} (position {len(keys)} of {len(keys)})")
    _print_order(add_to, keys)
    if len(keys) > 1:
        out(
            f"next: deploy, let JWKS caches refresh (max-age 300 s), then "
            f"`issuer keys promote {key_id} --file {add_to}`"
        )


@app.command(name="list")
def list_keys(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="A JWKS file. Default: JWT_SIGNING_KEYS (a path or inline JSON).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Show the ES256 keys in order (kids only, never key material): the first signs."""
    if file is not None:
        keys = read_keys(file)
        where = str(file)
    else:
        source = os.environ.get("JWT_SIGNING_KEYS", "").strip()
        if not source:
            raise CliError("pass --file, or set JWT_SIGNING_KEYS")
        try:
            keys = read_signing_keys(source)
        except ValueError as exc:
            raise CliError(f"JWT_SIGNING_KEYS: {exc}") from None
        where = "JWT_SIGNING_KEYS"
    if json_out:
        emit_json({"source": where, "keys": _summary(keys)})
        return
    _print_order(Path(where), keys)


@app.command()
def promote(
    kid: Annotated[str, typer.Argument(help="The key to sign with.")], file: FileOption
) -> None:
    """Move a key first: running issuers reading this file sign with it within 5 s."""
    keys = read_keys(file)
    index = next((i for i, k in enumerate(keys) if k["kid"] == kid), None)
    if index is None:
        raise CliError(f"{file}: no key with kid {kid!r}")
    if index == 0:
        out(f"{kid} already signs")
        return
    keys.insert(0, keys.pop(index))
    write_keys(file, keys)
    out(f"{kid} now signs; the others still verify")
    _print_order(file, keys)


@app.command()
def retire(
    kid: Annotated[str, typer.Argument(help="The key to remove.")], file: FileOption
) -> None:
    """Remove a key that no longer signs (after its last token has expired)."""
    keys = read_keys(file)
    index = next((i for i, k in enumerate(keys) if k["kid"] == kid), None)
    if index is None:
        raise CliError(f"{file}: no key with kid {kid!r}")
    if index == 0:
        raise CliError(f"{kid} is the signing key: promote another key first")
    keys.pop(index)
    write_keys(file, keys)
    out(f"removed {kid}: tokens it signed no longer verify")
    _print_order(file, keys)
