"""``python -m bench.soak [--seconds 60] [--clients 8]`` (``make soak``).

A bounded load run of the whole issuer, as deployed, on this machine: it
starts its own Postgres (durable settings: fsync and synchronous_commit on),
migrates a database, starts the fake Clerk and a real ``issuer serve``, and
drives a mix of calls for ``--seconds``:

* usage   ``POST /api/extension/usage`` with org-scoped long-lived tokens, each
          with its own Idempotency-Key (10 % against a small pool that runs
          dry, so clean 402s are part of the mix);
* validate ``GET /api/extension/auth/validate`` with long-lived and access tokens;
* issue   ``POST /api/extension-token/generate`` and
          ``POST /api/dashboard-token/generate`` with Clerk sessions.

It prints throughput, answers by operation and code, p50/p99 latency, and the
checks afterwards: ``credit_consistency_check()`` empty, every 200 of usage in
the ledger exactly once, every pool's balance equal to its grants minus the
charged 200s. Exit status 1 if any check fails or any answer was a 5xx or a
timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

from issuer.rpc import PsycopgRpc, Rpc
from issuer_dev import localdb, migrations
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import issuer_serve

RICH_POOL = Decimal(10_000_000)
POOR_POOL = Decimal(200)
WEIGHTS = {"usage": 0.6, "validate": 0.25, "issue": 0.15}
CLIENT_ID = "vscode-extension"
REDIRECT = "http://127.0.0.1:53682/callback"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load (default 60)")
    p.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    p.add_argument("--workers", type=int, default=1, help="issuer serve workers (default 1)")
    p.add_argument("--users", type=int, default=24, help="seated users (default 24)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the mix (default 1)")
    return p.parse_args(argv)


# -- the system under load --------------------------------------------------------


@dataclass
class Fixture:
    url: str
    clerk: FakeClerk
    rich_org: str
    poor_org: str
    users: list[str]
    poor_users: list[str]
    long_lived: dict[str, str] = field(default_factory=dict)
    access: dict[str, str] = field(default_factory=dict)


def _as_service(conn: psycopg.Connection[Any], query: str, params: Any) -> Any:
    with conn.transaction():
        conn.execute("set local role service_role")
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def arrange(url: str, clerk: FakeClerk, n_users: int) -> Fixture:
    """Two orgs (a rich pool, a small one), seated users, in Postgres and the fake Clerk."""
    rpc = Rpc(PsycopgRpc(url, max_size=2))
    tag = uuid.uuid4().hex[:6]
    with psycopg.connect(url, autocommit=True) as conn:
        orgs = []
        for name, pool in (("Rich", RICH_POOL), ("Poor", POOR_POOL)):
            org = f"org_soak_{name.lower()}_{tag}"
            clerk.add_organization(org, f"{name} Co")
            (org_uuid,) = _as_service(
                conn,
                "insert into public.organizations (clerk_org_id, name, stripe_customer_id) "
                "values (%s, %s, %s) returning id",
                (org, f"{name} Co", f"cus_{org}"),
            )[0]
            _as_service(
                conn,
                "insert into public.organization_subscriptions (organization_id, "
                "stripe_subscription_id, status, is_current, current_period_start, "
                "current_period_end) values (%s, %s, 'active', true, now() - interval '1 day', "
                "now() + interval '29 days')",
                (org_uuid, f"sub_{org}"),
            )
            rpc.grant_credits(p_amount=pool, p_description="soak grant", p_clerk_org_id=org)
            orgs.append(org)
        users = []
        for i in range(n_users):
            user = f"user_soak_{tag}_{i}"
            clerk.add_user(user, email=f"{user}@example.com")
            _as_service(
                conn,
                "insert into public.users (clerk_user_id, email) values (%s, %s)",
                (user, f"{user}@example.com"),
            )
            users.append(user)
        poor_users = users[: max(1, n_users // 6)]
        for user in users:
            org = orgs[1] if user in poor_users else orgs[0]
            clerk.add_membership(user, org, role="org:member")
            _as_service(
                conn,
                "insert into public.organization_seats (organization_id, user_id, role, status) "
                "select o.id, u.id, 'member', 'active' from public.organizations o, "
                "public.users u where o.clerk_org_id = %s and u.clerk_user_id = %s",
                (org, user),
            )
    rpc.close()
    return Fixture(url, clerk, orgs[0], orgs[1], users, poor_users)


# -- the load -------------------------------------------------------------------


@dataclass
class Sample:
    op: str
    status: int  # 0: no answer (timeout, connection error)
    code: str
    seconds: float


@dataclass
class Client:
    base_url: str
    fx: Fixture
    deadline: float
    rng: random.Random
    session_ttl: int
    samples: list[Sample] = field(default_factory=list)
    charged: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (org, tx id)

    def run(self) -> None:
        ops = list(WEIGHTS)
        weights = list(WEIGHTS.values())
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while time.monotonic() < self.deadline:
                op = self.rng.choices(ops, weights)[0]
                getattr(self, op)(http)

    def _send(self, http: httpx.Client, op: str, method: str, path: str, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            r = http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.samples.append(Sample(op, 0, type(exc).__name__, time.perf_counter() - t0))
            return None
        seconds = time.perf_counter() - t0
        try:
            body = r.json()
        except ValueError:
            body = {}
        code = "ok" if r.status_code < 300 else str((body or {}).get("error", "?"))
        self.samples.append(Sample(op, r.status_code, code, seconds))
        return body if r.status_code < 300 else None

    def usage(self, http: httpx.Client) -> None:
        poor = self.rng.random() < 0.1
        user = self.rng.choice(
            self.fx.poor_users if poor else self.fx.users[len(self.fx.poor_users) :]
        )
        key = f"soak-{uuid.uuid4().hex}"
        body = self._send(
            http,
            "usage",
            "POST",
            "/api/extension/usage",
            json={"amount": 1, "description": "soak"},
            headers={"Authorization": f"Bearer {self.fx.long_lived[user]}", "Idempotency-Key": key},
        )
        if body:
            org = self.fx.poor_org if poor else self.fx.rich_org
            self.charged[key] = (org, str(body["transaction_id"]))

    def validate(self, http: httpx.Client) -> None:
        user = self.rng.choice(self.fx.users)
        token = self.fx.long_lived[user] if self.rng.random() < 0.5 else self.fx.access[user]
        self._send(
            http,
            "validate",
            "GET",
            "/api/extension/auth/validate",
            headers={"Authorization": f"Bearer {token}"},
        )

    def issue(self, http: httpx.Client) -> None:
        user = self.rng.choice(self.fx.users)
        org = self.fx.poor_org if user in self.fx.poor_users else self.fx.rich_org
        session = self.fx.clerk.session_token(user, org_id=org, exp_in=self.session_ttl)
        path = (
            "/api/extension-token/generate"
            if self.rng.random() < 0.5
            else "/api/dashboard-token/generate"
        )
        self._send(
            http,
            "issue",
            "POST",
            path,
            json={"clerk_org_id": org, "name": "soak"},
            headers={"Authorization": f"Bearer {session}"},
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


# -- checks afterwards ----------------------------------------------------------


def check(fx: Fixture, charged: dict[str, tuple[str, str]]) -> dict[str, Any]:
    with psycopg.connect(fx.url, autocommit=True) as conn:
        problems = conn.execute("select * from public.credit_consistency_check()").fetchall()
        rows = conn.execute(
            "select idempotency_key, id::text from public.credit_transactions "
            "where idempotency_key like 'soak-%%'"
        ).fetchall()
        balances: dict[str, Decimal] = dict(
            conn.execute(
                "select o.clerk_org_id, s.credits_balance from public.organization_subscriptions s "
                "join public.organizations o on o.id = s.organization_id where s.is_current"
            ).fetchall()
        )
    keys = Counter(k for k, _ in rows)
    ledger: dict[str, str] = dict(rows)
    spent = Counter(org for org, _ in charged.values())
    return {
        "consistency_problems": len(problems),
        "ledger_rows": len(rows),
        "charged_200s": len(charged),
        "keys_twice": sum(1 for n in keys.values() if n > 1),
        "ledger_matches_200s": set(ledger) == set(charged)
        and all(ledger[k] == tx for k, (_, tx) in charged.items()),
        "rich_balance_exact": balances[fx.rich_org] == RICH_POOL - spent[fx.rich_org],
        "poor_balance_exact": balances[fx.poor_org] == POOR_POOL - spent[fx.poor_org],
        "poor_balance": balances[fx.poor_org],
    }


# -- main -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    command = "python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="issuer-soak-"))
    print(f"$ {command}".rstrip())
    with localdb.postgres(settings=dict(localdb.DURABLE_SETTINGS), use_env=False) as server:
        with psycopg.connect(server.url) as conn:
            row = conn.execute("show server_version").fetchone()
            version = str(row[0]) if row else "?"
        url = localdb.create_database(server.url, "soak")
        migrations.apply_bootstrap(url)
        migrations.migrate(url)
        with FakeClerk() as clerk:
            fx = arrange(url, clerk, args.users)
            env = {
                "JWT_SECRET": secrets.token_urlsafe(48),
                "DATABASE_URL": url,
                **clerk.env(),
                "OAUTH_CLIENTS": json.dumps({CLIENT_ID: [REDIRECT]}),
            }
            with issuer_serve(env, workdir, workers=args.workers) as served:
                base = served.url
                session_ttl = int(args.seconds) + 300
                with httpx.Client(base_url=base, timeout=30) as http:
                    for user in fx.users:
                        org = fx.poor_org if user in fx.poor_users else fx.rich_org
                        session = clerk.session_token(user, org_id=org, exp_in=session_ttl)
                        h = {"Authorization": f"Bearer {session}"}
                        r = http.post(
                            "/api/extension-token/generate", json={"clerk_org_id": org}, headers=h
                        )
                        r.raise_for_status()
                        fx.long_lived[user] = r.json()["token"]
                        r = http.post(
                            "/api/dashboard-token/generate", json={"clerk_org_id": org}, headers=h
                        )
                        r.raise_for_status()
                        fx.access[user] = r.json()["token"]
                rng = random.Random(args.seed)
                start = time.monotonic()
                clients = [
                    Client(
                        base,
                        fx,
                        start + args.seconds,
                        random.Random(rng.random()),
                        session_ttl,
                    )
                    for _ in range(args.clients)
                ]
                threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(args.seconds + 60)
                elapsed = time.monotonic() - start
                log = served.log()
        samples = [s for c in clients for s in c.samples]
        charged = {k: v for c in clients for k, v in c.charged.items()}
        result = check(fx, charged)

    print(
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, Postgres {version} (fsync=on, synchronous_commit=on), "
        f"issuer serve --workers {args.workers}, {args.clients} client threads, "
        f"{args.users} users"
    )
    print(f"duration {elapsed:.1f} s, {len(samples)} requests, {len(samples) / elapsed:.1f} req/s")
    by_op: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_op[s.op].append(s)
    print(f"{'operation':<10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  answers")
    for op in [*WEIGHTS, "all"]:
        group = samples if op == "all" else by_op.get(op, [])
        lat = [s.seconds * 1000 for s in group]
        answers = Counter(f"{s.status} {s.code}" for s in group)
        print(
            f"{op:<10} {len(group):>9} {len(group) / elapsed:>8.1f} "
            f"{percentile(lat, 50):>8.1f} {percentile(lat, 99):>8.1f}  "
            + ", ".join(f"{n} x {a}" for a, n in sorted(answers.items()))
        )
    server_errors = sum(1 for s in samples if s.status >= 500 or s.status == 0)
    print(f"5xx or no answer: {server_errors}")
    print(
        f"credit_consistency_check(): {result['consistency_problems']} problem rows; "
        f"usage 200s {result['charged_200s']}, ledger rows {result['ledger_rows']}, "
        f"keys in the ledger twice {result['keys_twice']}, "
        f"ledger matches the 200s: {result['ledger_matches_200s']}; "
        f"balances exact: {result['rich_balance_exact'] and result['poor_balance_exact']} "
        f"(small pool left: {result['poor_balance']})"
    )
    tracebacks = log.count("Traceback")
    print(f"issuer serve log: {tracebacks} tracebacks")
    ok = (
        server_errors == 0
        and tracebacks == 0
        and result["consistency_problems"] == 0
        and result["keys_twice"] == 0
        and result["ledger_matches_200s"]
        and result["rich_balance_exact"]
        and result["poor_balance_exact"]
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
