"""``issuer token``: mint, decode and verify our tokens from the command line.

``mint`` signs with the same settings and key ring as the server
(``JWT_SECRET`` / ``JWT_SIGNING_KEYS`` ...). An org token's attribution comes
from the database (``resolve_org_attribution``: the seat must be active),
never from the command line; Clerk membership is not checked (an operator's
tool), and ``org_role`` is whatever ``--org-role`` says. A long-lived token is
registered in ``extension_tokens`` (by hash) so the API accepts it and it can
be revoked.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import jwt
import typer
from rich.table import Table

from issuer.claims import TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION, OrgAttribution, build_claims
from issuer.cli._common import (
    CliError,
    DbUrlOption,
    console,
    emit_json,
    err_console,
    project_local_url,
)
from issuer.cli.credits import open_rpc
from issuer.errors import InvalidToken
from issuer.flows.minting import token_hash
from issuer.settings import Settings, load_settings
from issuer.signing import KeyRing

app = typer.Typer(help="Mint, decode and verify the issuer's tokens.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
TokenArgument = Annotated[
    str, typer.Argument(help="The token, or - to read it from stdin.", show_default=False)
]


class TokenType(StrEnum):
    access = TOKEN_TYPE_ACCESS
    extension_long_lived = TOKEN_TYPE_EXTENSION


class VerifyType(StrEnum):
    any = "any"
    access = TOKEN_TYPE_ACCESS
    extension_long_lived = TOKEN_TYPE_EXTENSION


def out(text: str, *, style: str | None = None) -> None:
    """One line on stdout (rich markup), never wrapped mid-word."""
    console.print(text, style=style, highlight=False, soft_wrap=True)


def err(text: str) -> None:
    """One line on stderr (hints, so stdout stays clean for scripts)."""
    err_console.print(text, highlight=False, soft_wrap=True)


def read_token(value: str) -> str:
    token = sys.stdin.read() if value == "-" else value
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise CliError("no token given")
    return token


def _claims_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("claim", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        text = "null" if value is None else str(value)
        if key in {"iat", "exp", "nbf"} and isinstance(value, int):
            text += f"  ({datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC)"
        table.add_row(key, text)
    return table


def _settings() -> Settings:
    return load_settings()


def _keys(settings: Settings) -> KeyRing:
    try:
        return KeyRing.from_settings(settings)
    except ValueError as exc:
        raise CliError(f"signing keys: {exc}") from None


@app.command()
def mint(
    sub: Annotated[
        str, typer.Option("--sub", help="Clerk user id (user_...).", show_default=False)
    ],
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            help="Clerk org id: an org token, if the user holds an ACTIVE seat (from the database).",
            show_default=False,
        ),
    ] = None,
    token_type: Annotated[TokenType, typer.Option("--type", help="Token type.")] = TokenType.access,
    email: Annotated[str | None, typer.Option(help="The email claim.", show_default=False)] = None,
    org_role: Annotated[
        str | None,
        typer.Option(
            help="org_role claim (Clerk's, e.g. org:admin); not checked.", show_default=False
        ),
    ] = None,
    ttl: Annotated[
        int | None,
        typer.Option(
            help="Lifetime in seconds. Default: ACCESS_TOKEN_TTL / EXTENSION_TOKEN_TTL.",
            min=1,
            show_default=False,
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Label of a long-lived token.")] = "issuer token mint",
    database_url: DbUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Sign a token with the configured keys; prints only the token (or JSON)."""
    if not sub.strip():
        raise CliError("--sub must be a Clerk user id such as user_2abc (not empty)")
    settings = _settings()
    keys = _keys(settings)
    kind = token_type.value
    lifetime = ttl or (
        settings.extension_token_ttl if kind == TOKEN_TYPE_EXTENSION else settings.access_token_ttl
    )
    needs_db = org is not None or kind == TOKEN_TYPE_EXTENSION
    attribution: OrgAttribution | None = None
    token_id: str | None = None
    if not needs_db:
        claims = build_claims(
            sub, email, kind, None, issuer=keys.issuer, audience=keys.audience, ttl_seconds=lifetime
        )
        token = keys.sign(claims)
    else:
        with open_rpc(database_url) as rpc:
            if org is not None:
                row = rpc.resolve_org_attribution(p_clerk_user_id=sub, p_clerk_org_id=org)
                if row is None:
                    raise CliError(
                        f"no org token: {sub} holds no active seat in {org} "
                        "(or one of them does not exist)"
                    )
                attribution = OrgAttribution.from_rpc(row, org_role=org_role)
            claims = build_claims(
                sub,
                email,
                kind,
                attribution,
                issuer=keys.issuer,
                audience=keys.audience,
                ttl_seconds=lifetime,
            )
            token = keys.sign(claims)
            if kind == TOKEN_TYPE_EXTENSION:
                token_id = str(
                    rpc.create_extension_token(
                        p_clerk_user_id=sub,
                        p_token_hash=token_hash(token),
                        p_name=name,
                        p_expires_at=datetime.fromtimestamp(claims.exp, UTC),
                        p_clerk_org_id=org,
                        p_jti=claims.jti,
                    )
                )
    if json_out:
        emit_json({"token": token, "token_id": token_id, "claims": claims.to_dict()})
        return
    typer.echo(token)
    scope = f"org {org} (seat {claims.seat_role})" if attribution else "personal"
    stored = f", stored as {token_id}" if token_id else ""
    err(
        f"[dim]{kind} token, {scope}, {keys.signing_alg}, expires "
        f"{datetime.fromtimestamp(claims.exp, UTC):%Y-%m-%d %H:%M} UTC{stored}[/]",
    )


@app.command()
def decode(token: TokenArgument, json_out: JsonOption = False) -> None:
    """Show a token's header and claims WITHOUT verifying anything (no key needed)."""
    raw = read_token(token)
    try:
        header = jwt.get_unverified_header(raw)
        claims = jwt.decode(raw, options={"verify_signature": False})
    except jwt.DecodeError as exc:
        raise CliError(f"not a JWT: {exc}") from None
    if json_out:
        emit_json({"verified": False, "header": header, "claims": claims})
        return
    out(
        "[bold yellow]UNVERIFIED[/]: decoded only; signature, expiry and audience "
        "not checked (use `issuer token verify`)"
    )
    console.print(_claims_table("header", header))
    console.print(_claims_table("claims", claims))


def _store_url(explicit: str | None) -> str | None:
    return explicit or os.environ.get("DATABASE_URL") or project_local_url()


@app.command()
def verify(
    token: TokenArgument,
    token_type: Annotated[
        VerifyType, typer.Option("--type", help="The type the token must have.")
    ] = VerifyType.any,
    database_url: DbUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Verify a token as the API does: signature, iss, aud, exp, iat, type, typ.

    A long-lived token is also looked up in extension_tokens (revocation) when a
    database is available (--database-url, DATABASE_URL or the project-local one).
    Exit code 1 and one line (e.g. `invalid token: expired`) when it is not valid.
    """
    raw = read_token(token)
    keys = _keys(_settings())
    expected = (
        [TOKEN_TYPE_ACCESS, TOKEN_TYPE_EXTENSION]
        if token_type is VerifyType.any
        else [token_type.value]
    )
    claims = keys.verify(raw, expected_type=expected)
    store_checked = False
    if claims.type == TOKEN_TYPE_EXTENSION:
        url = _store_url(database_url)
        if url is not None:
            with open_rpc(url) as rpc:
                row = rpc.validate_extension_token(p_token_hash=token_hash(raw))
            if not row.ok or row.clerk_user_id != claims.sub:
                raise InvalidToken("revoked")
            store_checked = True
    if json_out:
        emit_json({"valid": True, "store_checked": store_checked, "claims": claims.to_dict()})
        return
    note = ""
    if claims.type == TOKEN_TYPE_EXTENSION:
        note = (
            ", found in extension_tokens (not revoked)"
            if store_checked
            else "; NOT checked against extension_tokens (no database)"
        )
    out(f"[bold green]valid[/] {claims.type} token, pool {claims.pool}{note}")
    console.print(_claims_table("claims", claims.to_dict()))
