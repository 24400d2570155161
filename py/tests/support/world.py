"""A small world for API tests: the fake Clerk, a real database, a real Issuer.

Only Clerk is faked (it cannot run here), and the fake speaks Clerk's wire
format over real HTTP. Rows are arranged the way deployers' backends create
them: as ``service_role``, through the column grants and the credit RPCs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from fastapi.testclient import TestClient

from issuer.api import create_app
from issuer.service import Issuer
from issuer.settings import load_settings
from issuer_dev.fake_clerk import FakeClerk

JWT_SECRET = "test-secret-" + "x" * 40
CLIENT_ID = "vscode-extension"
REDIRECT_URI = "http://127.0.0.1:53682/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)[:64]
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def issuer_env(db_url: str, clerk: FakeClerk, **extra: str) -> dict[str, str]:
    return {
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": db_url,
        **clerk.env(),
        "OAUTH_CLIENTS": json.dumps({CLIENT_ID: [REDIRECT_URI, "http://127.0.0.1/callback"]}),
        **extra,
    }


@dataclass
class World:
    db_url: str
    clerk: FakeClerk
    issuer: Issuer
    client: TestClient
    _conn: psycopg.Connection[Any] | None = field(default=None, repr=False)

    # -- database ------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.db_url, autocommit=True)
        return self._conn

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    def as_service(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.transaction():
            self.conn.execute("set local role service_role")
            cur = self.conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    # -- arrange -------------------------------------------------------------
    def user(self, *, personal: Decimal | int = 0, email: str | None = None) -> str:
        clerk_user_id = unique("user")
        email = email or f"{clerk_user_id}@example.com"
        self.clerk.add_user(clerk_user_id, email=email)
        self.as_service(
            "insert into public.users (clerk_user_id, email) values (%s, %s)",
            (clerk_user_id, email),
        )
        if personal:
            self.issuer.rpc.grant_credits(
                p_amount=personal, p_description="test grant", p_clerk_user_id=clerk_user_id
            )
        return clerk_user_id

    def org(
        self,
        *,
        pool: Decimal | int = 0,
        status: str = "active",
        name: str | None = None,
    ) -> str:
        clerk_org_id = unique("org")
        name = name or f"Org {clerk_org_id[-4:]}"
        self.clerk.add_organization(clerk_org_id, name)
        (org_id,) = self.as_service(
            "insert into public.organizations (clerk_org_id, name, stripe_customer_id) "
            "values (%s, %s, %s) returning id",
            (clerk_org_id, name, unique("cus")),
        )[0]
        self.as_service(
            "insert into public.organization_subscriptions "
            "(organization_id, stripe_subscription_id, status, is_current, "
            " current_period_start, current_period_end) "
            "values (%s, %s, %s, true, now() - interval '1 day', now() + interval '29 days')",
            (org_id, unique("sub"), status),
        )
        if pool:
            self.issuer.rpc.grant_credits(
                p_amount=pool, p_description="test pool", p_clerk_org_id=clerk_org_id
            )
        return clerk_org_id

    def seat(
        self,
        clerk_org_id: str,
        clerk_user_id: str,
        *,
        role: str = "member",
        status: str = "active",
        clerk_role: str | None = None,
        member_in_clerk: bool = True,
    ) -> None:
        if member_in_clerk:
            self.clerk.add_membership(
                clerk_user_id,
                clerk_org_id,
                role=clerk_role or ("org:admin" if role in {"owner", "admin"} else "org:member"),
            )
        self.as_service(
            "insert into public.organization_seats (organization_id, user_id, role, status) "
            "select o.id, u.id, %s, %s from public.organizations o, public.users u "
            "where o.clerk_org_id = %s and u.clerk_user_id = %s",
            (role, status, clerk_org_id, clerk_user_id),
        )

    def set_seat(self, clerk_org_id: str, clerk_user_id: str, status: str) -> None:
        self.issuer.rpc.call(
            "set_seat_status",
            p_clerk_org_id=clerk_org_id,
            p_clerk_user_id=clerk_user_id,
            p_status=status,
        )

    # -- balances --------------------------------------------------------------
    def personal_balance(self, clerk_user_id: str) -> Decimal:
        return Decimal(
            self.sql(
                "select credits_balance from public.users where clerk_user_id = %s",
                (clerk_user_id,),
            )[0][0]
        )

    def pool_balance(self, clerk_org_id: str) -> Decimal:
        return Decimal(
            self.sql(
                "select s.credits_balance from public.organization_subscriptions s "
                "join public.organizations o on o.id = s.organization_id "
                "where o.clerk_org_id = %s and s.is_current",
                (clerk_org_id,),
            )[0][0]
        )

    def consistency_problems(self) -> list[tuple[Any, ...]]:
        return self.sql("select * from public.credit_consistency_check()")

    # -- identity --------------------------------------------------------------
    def session(self, clerk_user_id: str, **kw: Any) -> str:
        return self.clerk.session_token(clerk_user_id, **kw)

    def clerk_auth(self, clerk_user_id: str, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session(clerk_user_id, **kw)}"}

    def extension_token(self, clerk_user_id: str, clerk_org_id: str | None = None) -> str:
        body: dict[str, Any] = {"name": "test"}
        if clerk_org_id:
            body["clerk_org_id"] = clerk_org_id
        r = self.client.post(
            "/api/extension-token/generate", json=body, headers=self.clerk_auth(clerk_user_id)
        )
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def make_world(db_url: str, clerk: FakeClerk, **env: str) -> World:
    settings = load_settings(issuer_env(db_url, clerk, **env))
    issuer = Issuer.from_settings(settings)
    client = TestClient(create_app(issuer), raise_server_exceptions=False)
    return World(db_url=db_url, clerk=clerk, issuer=issuer, client=client)


class Poster(Protocol):
    """What the sign-in helpers need: FastAPI's TestClient or an httpx.Client on a served issuer."""

    def post(self, url: str, **kwargs: Any) -> Any: ...


def approve_pkce(
    http: Poster, world: World, user: str, org: str | None = None, **kw: Any
) -> tuple[Any, str]:
    """The browser's half of the extension's PKCE sign-in: the approval with a Clerk session.

    Returns the approval's response (its JSON has the code) and the verifier.
    """
    verifier, challenge = pkce_pair()
    body: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **kw,
    }
    if org:
        body["clerk_org_id"] = org
    r = http.post("/api/auth/complete-vscode-auth", json=body, headers=world.clerk_auth(user))
    return r, verifier


def pkce_sign_in(
    http: Poster, world: World, user: str, org: str | None = None, **kw: Any
) -> dict[str, Any]:
    """The extension's whole PKCE sign-in: approve, then redeem the code at the token endpoint."""
    r, verifier = approve_pkce(http, world, user, org, **kw)
    assert r.status_code == 200, r.text
    r = http.post(
        "/api/extension/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": r.json()["code"],
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())
