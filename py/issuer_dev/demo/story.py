"""The story, step by step, through the issuer's real HTTP API.

Every step checks what it expects (the demo doubles as a smoke test): a step
whose answer differs is shown with a cross, recorded in
:attr:`DemoReport.failures`, and ``issuer demo`` exits 1.

Amounts (credits): Acme's pool starts at 100; Bob 25, Carol 10, Dave 50
personal credits. Alice spends 30, Bob 20 (and retries it), Alice 50: the pool
is dry. Bob's next call gets 402 naming Acme Inc; his personal 25 stay put.
Acme tops up 20; the admin revokes Bob's seat; Bob's still-valid token gets
403, Alice spends 5. Final pool: 15 (in the analytics chapter). Then the caps
chapter (:mod:`.caps`): Acme tops up 30, Bob's seat is back and capped at 25 a
day; he spends 4, 2 more is 403 seat_cap_reached, Alice spends 10. Then the
holds chapter (:mod:`.holds`): Alice's streamed completion holds 10 and is
captured for 3.5, the other 6.5 released.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import jwt

from issuer_dev.demo import caps, holds
from issuer_dev.demo.cast import ACME, ALICE, BOB, CAROL, DAVE, PEOPLE, Person, create_cast
from issuer_dev.demo.environment import Environment
from issuer_dev.demo.render import Narrator, fmt

# Queries of the analytics cookbook (docs/analytics.md, by their `-- name:`),
# with the org as a parameter instead of the cookbook's literal.
SEATS_OF_AN_ORG_SQL = """
select clerk_user_id, seat_role, seat_status, deductions, net_credits_used, last_used_at
from public.credit_usage_by_seat
where clerk_org_id = %s
order by net_credits_used desc
"""

ORG_USAGE_BY_DAY_SQL = """
select usage_date, deductions, credits_used, credits_refunded, net_credits_used, active_seats
from public.credit_usage_by_org_day
where clerk_org_id = %s
order by usage_date desc
limit 30
"""

ORG_POOLS_RUNNING_LOW_SQL = """
select clerk_org_id, organization_name, subscription_status, balance
from public.credit_balances
where pool = 'organization' and is_current and balance < 100
order by balance
"""

LARGEST_PERSONAL_BALANCES_SQL = """
select clerk_user_id, balance
from public.credit_balances
where pool = 'personal'
order by balance desc
limit 20
"""

CONSISTENCY_SQL = """
select pool, owner_id, balance, ledger_sum
from public.credit_consistency_check()
"""


@dataclass
class DemoReport:
    """What happened, for callers that check it (tests) rather than read it."""

    scopes: dict[str, str] = field(default_factory=dict)
    """Person → pool of the token they got (``organization`` / ``personal``)."""
    denials: dict[str, str] = field(default_factory=dict)
    """Person → ``org_scope_denied`` reason, for org scope asked and refused."""
    replayed: bool = False
    charged_once: bool = False
    dry_status: int | None = None
    dry_body: dict[str, Any] = field(default_factory=dict)
    bob_personal_untouched: bool = False
    revoked_status: int | None = None
    revoked_body: dict[str, Any] = field(default_factory=dict)
    final_pool: Decimal | None = None
    consistency_problems: list[dict[str, Any]] = field(default_factory=list)
    capped_status: int | None = None
    capped_body: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class Story:
    def __init__(self, env: Environment, narrator: Narrator) -> None:
        self.env = env
        self.say = narrator
        self.report = DemoReport()
        self.tokens: dict[str, str] = {}

    # -- helpers ----------------------------------------------------------------

    def check(self, ok: bool, text: str, detail: str = "") -> bool:
        self.say.step(text, detail, ok=ok)
        if not ok:
            self.report.failures.append(f"{text} {detail}".strip())
        return ok

    def session(self, person: Person, *, active_org: str | None = None) -> dict[str, str]:
        token = self.env.clerk.session_token(
            person.clerk_user_id, email=person.email, org_id=active_org
        )
        return {"Authorization": f"Bearer {token}"}

    def spend(
        self, person: Person, amount: int, description: str, *, key: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[person.name]}"}
        if key:
            headers["Idempotency-Key"] = key
        return self.env.http.post(
            "/api/extension/usage",
            json={"amount": amount, "description": description},
            headers=headers,
        )

    def pool_balance(self) -> Decimal:
        rows = self.env.query(
            "select balance from public.credit_balances where clerk_org_id = %s and is_current",
            (ACME.clerk_org_id,),
        )
        return Decimal(rows[0]["balance"])

    def personal_balance(self, person: Person) -> Decimal:
        rows = self.env.query(
            "select credits_balance from public.users where clerk_user_id = %s",
            (person.clerk_user_id,),
        )
        return Decimal(rows[0]["credits_balance"])

    # -- chapters -----------------------------------------------------------------

    def run(self) -> DemoReport:
        self.stage()
        self.issue_tokens()
        self.spend_credits()
        self.revoke_seat()
        self.analytics()
        caps.seat_caps(self, 5)
        holds.tell(self, 6)
        return self.report

    def stage(self) -> None:
        env = self.env
        self.say.step(f"Postgres: database {env.db_label}", env.postgres_note)
        self.say.step(
            f"Schema: sql/bootstrap + {env.migrations_applied} migrations applied",
            "like `supabase db push` records them",
        )
        self.say.step(f"Fake Clerk on {env.clerk.base_url}", "Clerk's JWKS and Backend API")
        health = env.http.get("/healthz")
        self.check(
            health.status_code == 200,
            f"Issuer HTTP API on {env.base_url}",
            f"GET /healthz → {health.status_code} {health.json().get('status')}",
        )
        create_cast(env)
        self.say.step(
            f"{ACME.name} ({ACME.clerk_org_id}): subscription {ACME.stripe_subscription_id} "
            f"active, pool {fmt(ACME.pool)} credits",
            "rows created as service_role; credits through grant_credits",
        )
        self.say.table(
            "Who is who",
            ["person", "clerk_user_id", "Acme membership", "seat", "personal credits"],
            [
                (
                    p.name,
                    p.clerk_user_id,
                    p.clerk_role if p.seat_role else "–",
                    f"{p.seat_role} ({p.seat_status})" if p.seat_role else "–",
                    p.personal,
                )
                for p in PEOPLE
            ],
            numeric=["personal credits"],
        )

    def issue_tokens(self) -> None:
        self.say.chapter(1, "Tokens: org scope only with an active seat")
        asks = [
            (ALICE, ACME.clerk_org_id, ACME.clerk_org_id, "organization"),
            (BOB, ACME.clerk_org_id, None, "organization"),
            (CAROL, ACME.clerk_org_id, None, "personal"),
            (DAVE, None, None, "personal"),
        ]
        verified: dict[str, dict[str, Any]] = {}
        for person, org, active_org, expected in asks:
            body: dict[str, Any] = {"name": "VS Code"}
            if org:
                body["clerk_org_id"] = org
            r = self.env.http.post(
                "/api/extension-token/generate",
                json=body,
                headers=self.session(person, active_org=active_org),
            )
            if r.status_code != 201:
                self.check(
                    False, f"{person.name} asks for a token", f"HTTP {r.status_code} {r.text}"
                )
                continue
            data = r.json()
            self.tokens[person.name] = data["token"]
            claims = data["claims"]
            self.report.scopes[person.name] = claims["pool"]
            denied = data.get("org_scope_denied")
            if denied:
                self.report.denials[person.name] = denied["reason"]
            asked = (
                f"{person.name} asks for {ACME.name}" if org else f"{person.name} asks for no org"
            )
            if claims["pool"] == "organization":
                text = f"{asked} → org token: {claims['organization_name']}, seat {claims['seat_role']}"
                how = (
                    "membership from the session's active org (no Clerk API call)"
                    if active_org
                    else "membership from Clerk's API"
                )
            elif denied:
                text = f"{asked} → personal token (org_scope_denied: {denied['reason']})"
                how = f"her seat is {person.seat_status}: org claims need an active seat"
            else:
                text = f"{asked} → personal token"
                how = "no org asked: personal credits"
            self.check(claims["pool"] == expected, text, how)
            valid = self.env.http.get(
                "/api/extension/auth/validate",
                headers={"Authorization": f"Bearer {data['token']}"},
            ).json()
            if valid.get("valid"):
                verified[person.name] = valid["claims"]
        header = (
            jwt.get_unverified_header(self.tokens[ALICE.name]) if ALICE.name in self.tokens else {}
        )
        self.check(
            set(verified) == {p.name for p in PEOPLE},
            "Every token verifies at GET /api/extension/auth/validate",
            f"alg {header.get('alg')}, kid {header.get('kid')}, typ {header.get('typ')}",
        )
        self.say.claims_table(
            "Decoded claims (verified by the API); uuids shortened",
            {name: verified[name] for name in (ALICE.name, BOB.name) if name in verified},
        )

    def spend_credits(self) -> None:
        self.say.chapter(2, "Usage: POST /api/extension/usage spends the pool the token names")
        r = self.spend(ALICE, 30, "completion: 3,000 tokens")
        self.check(
            r.status_code == 200 and r.json()["pool"] == "organization",
            "Alice spends 30",
            f"HTTP {r.status_code} · pool {r.json().get('pool')} · remaining {fmt(r.json().get('remaining'))}",
        )
        r = self.spend(BOB, 20, "completion: 2,000 tokens", key="bob-req-0001")
        self.check(
            r.status_code == 200 and r.json()["replayed"] is False,
            "Bob spends 20 with Idempotency-Key bob-req-0001",
            f"HTTP {r.status_code} · remaining {fmt(r.json().get('remaining'))} · replayed={fmt(r.json().get('replayed'))}",
        )
        before_retry = self.pool_balance()
        retry = self.spend(BOB, 20, "completion: 2,000 tokens", key="bob-req-0001")
        self.report.replayed = retry.status_code == 200 and retry.json()["replayed"] is True
        self.report.charged_once = self.pool_balance() == before_retry
        self.check(
            self.report.replayed and self.report.charged_once,
            "Bob's client retries the same request",
            f"HTTP {retry.status_code} · replayed={fmt(retry.json().get('replayed'))} · "
            f"pool still {fmt(self.pool_balance())}: charged once",
        )
        for person, amount in ((CAROL, 4), (DAVE, 10)):
            r = self.spend(person, amount, "completion")
            self.check(
                r.status_code == 200 and r.json()["pool"] == "personal",
                f"{person.name} spends {amount}",
                f"HTTP {r.status_code} · pool {r.json().get('pool')} · "
                f"remaining {fmt(r.json().get('remaining'))} (personal)",
            )
        r = self.spend(ALICE, 50, "batch refactor")
        self.check(
            r.status_code == 200 and Decimal(str(r.json()["remaining"])) == 0,
            "Alice spends 50: the pool is dry",
            f"HTTP {r.status_code} · remaining {fmt(r.json().get('remaining'))}",
        )
        bob_personal = self.personal_balance(BOB)
        dry = self.spend(BOB, 5, "completion")
        self.report.dry_status = dry.status_code
        self.report.dry_body = dry.json()
        self.check(
            dry.status_code == 402 and dry.json().get("organization_name") == ACME.name,
            f"Bob spends 5 → 402 {dry.json().get('error')} · {dry.json().get('organization_name')}",
            f"body {json.dumps(dry.json())}",
        )
        after = self.personal_balance(BOB)
        self.report.bob_personal_untouched = after == bob_personal == BOB.personal
        self.check(
            self.report.bob_personal_untouched,
            f"Bob's personal balance untouched: {fmt(after)}",
            "an org token never falls back to personal credits",
        )

    def revoke_seat(self) -> None:
        self.say.chapter(3, "An admin revokes Bob's seat")
        self.env.rpc.grant_credits(
            p_amount=20,
            p_description="Acme top-up",
            p_clerk_org_id=ACME.clerk_org_id,
            p_idempotency_key="stripe:in_acme_0002",
        )
        self.say.step(f"{ACME.name} buys 20 more credits", f"pool {fmt(self.pool_balance())}")
        seat = self.env.rpc.set_seat_status(
            p_clerk_org_id=ACME.clerk_org_id,
            p_clerk_user_id=BOB.clerk_user_id,
            p_status="revoked",
        )
        self.say.step(
            "set_seat_status(org_2acme, user_2bob, 'revoked')",
            f"service role RPC · seat status now {seat.status}",
        )
        valid = self.env.http.get(
            "/api/extension/auth/validate",
            headers={"Authorization": f"Bearer {self.tokens[BOB.name]}"},
        ).json()
        self.check(
            valid.get("valid") is True and valid["claims"]["pool"] == "organization",
            "Bob's org token still verifies",
            "it names Acme until it expires or is refreshed",
        )
        r = self.spend(BOB, 5, "completion")
        self.report.revoked_status = r.status_code
        self.report.revoked_body = r.json()
        self.check(
            r.status_code == 403 and r.json().get("error") == "no_active_seat",
            f"…but Bob spends 5 → {r.status_code} {r.json().get('error')}",
            "the seat is re-checked at every deduction",
        )
        r = self.spend(ALICE, 5, "completion")
        self.check(
            r.status_code == 200,
            "Alice spends 5: the pool still serves active seats",
            f"HTTP {r.status_code} · remaining {fmt(r.json().get('remaining'))}",
        )
        r = self.env.http.post(
            "/api/extension-token/generate",
            json={"name": "VS Code", "clerk_org_id": ACME.clerk_org_id},
            headers=self.session(BOB),
        )
        denied = (r.json().get("org_scope_denied") or {}).get("reason")
        self.check(
            r.status_code == 201 and r.json()["claims"]["pool"] == "personal",
            f"Bob asks for a new Acme token → personal token (org_scope_denied: {denied})",
        )

    def analytics(self) -> None:
        self.say.chapter(4, "Analytics (the docs/analytics.md cookbook) and the consistency check")
        names = {p.clerk_user_id: p.name for p in PEOPLE}
        seats = self.env.query(SEATS_OF_AN_ORG_SQL, (ACME.clerk_org_id,))
        self.say.table(
            f"{ACME.name}: usage per seat (seats_of_an_org, public.credit_usage_by_seat)",
            ["seat holder", "role", "status", "deductions", "net used", "last used"],
            [
                (
                    names.get(s["clerk_user_id"], s["clerk_user_id"]),
                    s["seat_role"],
                    s["seat_status"],
                    s["deductions"],
                    s["net_credits_used"],
                    s["last_used_at"],
                )
                for s in seats
            ],
            numeric=["deductions", "net used"],
        )
        days = self.env.query(ORG_USAGE_BY_DAY_SQL, (ACME.clerk_org_id,))
        self.say.table(
            f"{ACME.name}: usage per day (org_usage_by_day, public.credit_usage_by_org_day)",
            ["day (UTC)", "deductions", "used", "refunded", "net used", "seats that spent"],
            [
                (
                    d["usage_date"],
                    d["deductions"],
                    d["credits_used"],
                    d["credits_refunded"],
                    d["net_credits_used"],
                    d["active_seats"],
                )
                for d in days
            ],
            numeric=["deductions", "used", "refunded", "net used", "seats that spent"],
        )
        pools = self.env.query(ORG_POOLS_RUNNING_LOW_SQL)
        personal = self.env.query(LARGEST_PERSONAL_BALANCES_SQL)
        self.say.table(
            "Balance per pool (public.credit_balances)",
            ["pool", "owner", "subscription", "balance"],
            [
                ("organization", p["organization_name"], p["subscription_status"], p["balance"])
                for p in pools
            ]
            + [
                ("personal", names.get(p["clerk_user_id"], p["clerk_user_id"]), None, p["balance"])
                for p in personal
            ],
            numeric=["balance"],
        )
        self.report.final_pool = self.pool_balance()
        self.say.blank()
        problems = self.env.query(CONSISTENCY_SQL)
        self.report.consistency_problems = problems
        self.check(
            not problems,
            "credit_consistency_check(): empty" if not problems else "credit_consistency_check()",
            "every balance equals the sum of its ledger rows"
            if not problems
            else f"{len(problems)} pool(s) disagree with the ledger",
        )
