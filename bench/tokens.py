"""Token issuance, access-token verification, long-lived token verification.

All three run the issuer's own code (``issuer.flows``, ``issuer.signing``)
against the seeded benchmark database through the production connection
pool (:class:`issuer.rpc.PsycopgRpc`). Round trips are counted twice: by a
wrapper around the RPC backend (every ``call`` is one statement) and by the
server (``pg_stat_statements`` calls by ``service_role``).
"""

from __future__ import annotations

import cProfile
import hashlib
import hmac
import json
import pstats
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.utils import base64url_decode

from bench import pg, seed
from bench.context import Ctx
from bench.report import Result, Row
from issuer.claims import (
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_EXTENSION,
    OrgAttribution,
    TokenClaims,
    build_claims,
)
from issuer.clerk import ClerkSession
from issuer.flows import extension_tokens
from issuer.flows.bearer import verify_bearer
from issuer.flows.minting import mint
from issuer.flows.scope import resolve_scope
from issuer.service import Issuer
from issuer.settings import load_settings
from issuer.signing import KeyRing, generate_es256_jwk
from issuer_dev.fake_clerk import FakeClerk

JWT_SECRET = "bench-secret-" + "b" * 40


class CountingBackend:
    """Wraps an RPC backend; ``calls`` = statements sent = round trips."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def call(
        self, fn: str, params: dict[str, Any], *, composite: bool = False, setof: bool = False
    ) -> Any:
        self.calls += 1
        return self.inner.call(fn, params, composite=composite, setof=setof)

    def ping(self) -> bool:
        return bool(self.inner.ping())

    def close(self) -> None:
        self.inner.close()


def issuer_env(url: str, clerk: FakeClerk, alg: str) -> dict[str, str]:
    env = {
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": url,
        "DATABASE_POOL_SIZE": "10",
        **clerk.env(),
    }
    if alg == "ES256":
        env["JWT_SIGNING_KEYS"] = json.dumps({"keys": [generate_es256_jwk("bench-1")]})
    return env


@contextmanager
def issuer(ctx: Ctx, alg: str) -> Iterator[tuple[Issuer, CountingBackend, FakeClerk]]:
    with FakeClerk() as clerk:
        iss = Issuer.from_settings(load_settings(issuer_env(ctx.url, clerk, alg)))
        counter = CountingBackend(iss.rpc.backend)
        iss.rpc.backend = counter
        try:
            yield iss, counter, clerk
        finally:
            iss.close()


def session(k: int) -> ClerkSession:
    """user_s<k>, whose verified Clerk session names org_s<k> as active org."""
    return ClerkSession(
        user_id=f"user_s{k}",
        session_id=f"sess_{k}",
        email=f"user_s{k}@bench.invalid",
        active_org_id=f"org_s{k}",
        active_org_role="org:member",
        version=2,
    )


def timed(fn: Callable[[], Any], seconds: float, *, limit: int = 200_000) -> list[float]:
    """Latencies (µs) of ``fn`` called back to back for ``seconds``."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(out) < limit:
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e6)
    return out


def service_role_calls(conn: Any) -> int:
    return int(
        pg.scalar(
            conn,
            "select coalesce(sum(calls), 0) from pg_stat_statements "
            "where userid = 'service_role'::regrole",
        )
    )


def profile_top(fn: Callable[[], Any], calls: int, top: int = 6) -> str:
    """Where ``fn``'s time goes: the functions with the most own time, µs per call of fn.

    Times are under cProfile, which inflates them; compare them with each other.
    """
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (path, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = name if path == "~" else f"{Path(path).parent.name}/{Path(path).name}:{name}"
        rows.append((tottime, where))
    rows.sort(reverse=True)
    return "profile, own µs per call: " + ", ".join(
        f"{where} {1e6 * t / calls:.0f}" for t, where in rows[:top]
    )


@dataclass
class Phase:
    lat: list[float]
    round_trips: float
    server_calls: float


def count_phase(ctx: Ctx, counter: CountingBackend, fn: Callable[[], Any], s: float) -> Phase:
    with pg.connect(ctx.url) as conn:
        conn.execute("select pg_stat_statements_reset()")
        before = counter.calls
        lat = timed(fn, s)
        calls = counter.calls - before
        server = service_role_calls(conn)
    n = max(1, len(lat))
    return Phase(lat, calls / n, server / n)


# -- issuance ------------------------------------------------------------------------


def _issuance_rows(ctx: Ctx, alg: str, s: float) -> list[Row]:
    with issuer(ctx, alg) as (iss, counter, clerk):
        p50s: list[float] = []
        p99s: list[float] = []
        rts: list[float] = []
        signs: list[float] = []
        trips: list[float] = []
        server: list[float] = []
        wrong = 0
        claims = build_claims(
            "user_s1",
            None,
            TOKEN_TYPE_ACCESS,
            None,
            issuer=iss.settings.jwt_issuer,
            audience=iss.settings.jwt_audience,
            ttl_seconds=3600,
        )

        def issue() -> None:
            nonlocal wrong
            k = random.randint(1, seed.SPREAD)
            sess = session(k)
            scope = resolve_scope(iss, sess, sess.active_org_id, require_org=True)
            minted = mint(
                iss,
                sub=sess.user_id,
                email=sess.email,
                token_type=TOKEN_TYPE_ACCESS,
                attribution=scope.attribution,
                ttl_seconds=3600,
            )
            if minted.claims.clerk_org_id != sess.active_org_id:
                wrong += 1

        def sign() -> None:
            iss.keys.sign(claims)

        timed(issue, 0.3)  # warm the pool's connections and plans
        for _ in range(ctx.config.runs):
            rt = count_phase(ctx, counter, iss.rpc.ping, s)
            signed = timed(sign, s / 2)
            ph = count_phase(ctx, counter, issue, s)
            rts.append(pg.percentile(rt.lat, 0.5))
            signs.append(pg.percentile(signed, 0.5))
            p50s.append(pg.percentile(ph.lat, 0.5))
            p99s.append(pg.percentile(ph.lat, 0.99))
            trips.append(ph.round_trips)
            server.append(ph.server_calls)
        clerk_calls = clerk.api_calls
        profiled = profile_top(issue, 500) if ctx.config.profile else ""
    rt50, sign50, p50 = pg.median(rts), pg.median(signs), pg.median(p50s)
    budget = 2 * rt50 + sign50
    correctness = "ok, org claims on every token" if wrong == 0 else f"MISMATCH: {wrong}"
    if clerk_calls:
        correctness += f"; {clerk_calls} Clerk API calls"
    return [
        Row(
            scenario=f"issuance p50 ({alg})",
            clients="1",
            ours=f"p50 {p50:.0f} µs, p99 {pg.median(p99s):.0f} µs",
            baseline=f"RT {rt50:.0f} µs + sign {sign50:.0f} µs",
            ratio=p50 / budget,
            target="≤ 1.0 (p50 ≤ 2×RT + sign)",
            met=p50 <= budget,
            correctness=correctness,
            note="; ".join(x for x in (pg.spread_note(p50s), profiled) if x),
        ),
        Row(
            scenario=f"round trips/issuance ({alg})",
            clients="1",
            ours=f"{pg.median(trips):.2f} (server: {pg.median(server):.2f})",
            baseline="1",
            ratio=pg.median(trips),
            target="= 1",
            met=abs(pg.median(trips) - 1) < 0.01 and abs(pg.median(server) - 1) < 0.01,
            correctness="-",
        ),
    ]


def issuance(ctx: Ctx) -> Result:
    started = time.monotonic()
    result = Result(
        name="issuance",
        title="Org-scoped token issuance (attribution RPC + sign), direct connection",
        baseline_name="select 1 through the same pool (p50) and signing alone (p50)",
    )
    s = max(0.5, ctx.config.seconds / 3)
    for alg in ("HS256", "ES256"):
        result.rows.extend(_issuance_rows(ctx, alg, s))
    result.notes.append(
        "session with the requested org active (claims-first membership: no Clerk API call); "
        "ratio = p50 / (2 x RT + sign); RT = PsycopgRpc.ping() = select 1 through the "
        "issuer's pool; round trips counted by a wrapper around the RPC backend and by "
        "pg_stat_statements (calls by service_role)"
    )
    result.seconds = time.monotonic() - started
    return result


# -- access-token verification -------------------------------------------------------


def _primitive(keys: KeyRing, token: str, alg: str) -> Callable[[], Any]:
    """The bare signature check for ``token``: the ceiling of any verifier."""
    signing_input, _, sig = token.rpartition(".")
    raw_sig = base64url_decode(sig.encode())
    msg = signing_input.encode()
    if alg == "HS256":
        secret = JWT_SECRET.encode()

        def check_hmac() -> bool:
            mac = hmac.new(secret, msg, hashlib.sha256).digest()
            return hmac.compare_digest(mac, raw_sig)

        return check_hmac
    public = keys._ec_keys[keys.signing_kid or ""].public_key
    der = encode_dss_signature(
        int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    )

    def check_ecdsa() -> None:
        public.verify(der, msg, ec.ECDSA(hashes.SHA256()))

    return check_ecdsa


def per_cpu_second(fn: Callable[[], Any], seconds: float) -> tuple[float, float]:
    """(calls per CPU second of this thread, calls per wall second)."""
    n = 0
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    deadline = wall0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            fn()
        n += 100
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    return n / max(cpu, 1e-9), n / wall


def _verify_rows(ctx: Ctx, alg: str, s: float) -> list[Row]:
    with issuer(ctx, alg) as (iss, _counter, _clerk):
        row = iss.rpc.resolve_org_attribution(p_clerk_user_id="user_s1", p_clerk_org_id="org_s1")
        assert row is not None
        claims = build_claims(
            "user_s1",
            "user_s1@bench.invalid",
            TOKEN_TYPE_ACCESS,
            OrgAttribution.from_rpc(row, org_role="org:member"),
            issuer=iss.settings.jwt_issuer,
            audience=iss.settings.jwt_audience,
            ttl_seconds=3600,
        )
        keys = iss.keys
        token = keys.sign(claims)

    def ours() -> TokenClaims:
        return keys.verify(token, expected_type=TOKEN_TYPE_ACCESS)

    prim = _primitive(keys, token, alg)
    ours_rates, prim_rates, walls = [], [], []
    for _ in range(ctx.config.runs):
        cpu_rate, wall_rate = per_cpu_second(ours, s)
        ours_rates.append(cpu_rate)
        walls.append(wall_rate)
        prim_rates.append(per_cpu_second(prim, s / 2)[0])
    rate, base = pg.median(ours_rates), pg.median(prim_rates)
    rows = [
        Row(
            scenario=f"KeyRing.verify ({alg}, org token)",
            clients="1 thread",
            ours=f"{rate:,.0f} /s",
            baseline=f"{base:,.0f} /s",
            ratio=rate / base,
            target="≥ 20,000 /s",
            met=rate >= 20_000,
            correctness="ok, claims round-trip" if ours() == claims else "MISMATCH",
            note=f"wall-clock {pg.median(walls):,.0f} /s; {1e6 / rate:.0f} µs CPU each"
            + ("; " + pg.spread_note(ours_rates) if pg.spread_note(ours_rates) else "")
            + ("; " + profile_top(ours, 2000) if ctx.config.profile else ""),
        )
    ]
    return rows


def verify(ctx: Ctx) -> Result:
    started = time.monotonic()
    result = Result(
        name="verify",
        title="Access-token verification (no database), one core",
        baseline_name="the bare signature check (HMAC-SHA256 / ECDSA P-256 verify)",
    )
    s = max(0.5, ctx.config.seconds / 4)
    for alg in ("HS256", "ES256"):
        result.rows.extend(_verify_rows(ctx, alg, s))
    result.notes.append(
        "per CPU second of the verifying thread (time.thread_time), so other load on the "
        "machine does not count against it; wall-clock rate in the note"
    )
    result.seconds = time.monotonic() - started
    return result


# -- long-lived token verification -----------------------------------------------------


def long_lived(ctx: Ctx) -> Result:
    started = time.monotonic()
    result = Result(
        name="long-lived",
        title="Long-lived token verification (signature + validate_extension_token)",
        baseline_name="select 1 through the same pool (p50) + signature check alone (p50)",
    )
    s = max(0.5, ctx.config.seconds / 3)
    with issuer(ctx, "ES256") as (iss, counter, _clerk):
        tokens = []
        for k in range(1, 201):
            issued = extension_tokens.generate(
                iss, session(k), name="bench", clerk_org_id=f"org_s{k}", require_org=True
            )
            tokens.append(issued.minted.token)
        bad = 0

        def check() -> None:
            nonlocal bad
            t = random.choice(tokens)
            claims = verify_bearer(iss, t, allowed=(TOKEN_TYPE_EXTENSION,))
            if claims.clerk_org_id is None:
                bad += 1

        timed(check, 0.3)
        p50s, p99s, rts, sigs, trips, server = [], [], [], [], [], []
        for _ in range(ctx.config.runs):
            rt = count_phase(ctx, counter, iss.rpc.ping, s)
            sig = timed(
                lambda: iss.keys.verify(tokens[0], expected_type=TOKEN_TYPE_EXTENSION), s / 2
            )
            ph = count_phase(ctx, counter, check, s)
            rts.append(pg.percentile(rt.lat, 0.5))
            sigs.append(pg.percentile(sig, 0.5))
            p50s.append(pg.percentile(ph.lat, 0.5))
            p99s.append(pg.percentile(ph.lat, 0.99))
            trips.append(ph.round_trips)
            server.append(ph.server_calls)
    rt50, sig50, p50 = pg.median(rts), pg.median(sigs), pg.median(p50s)
    result.rows.append(
        Row(
            scenario="verify_bearer (ES256 extension token)",
            clients="1",
            ours=f"p50 {p50:.0f} µs, p99 {pg.median(p99s):.0f} µs",
            baseline=f"RT {rt50:.0f} µs + verify {sig50:.0f} µs",
            ratio=p50 / (rt50 + sig50),
            target="-",
            met=None,
            correctness="ok, 200 tokens valid" if bad == 0 else f"MISMATCH: {bad}",
            note=pg.spread_note(p50s),
        )
    )
    result.rows.append(
        Row(
            scenario="round trips/verification",
            clients="1",
            ours=f"{pg.median(trips):.2f} (server: {pg.median(server):.2f})",
            baseline="1",
            ratio=pg.median(trips),
            target="= 1",
            met=abs(pg.median(trips) - 1) < 0.01 and abs(pg.median(server) - 1) < 0.01,
            correctness="-",
        )
    )
    result.notes.append(
        "validate_extension_token touches last_used_at at most once a minute per token: "
        "those writes (with a durable commit) are in the p99"
    )
    result.seconds = time.monotonic() - started
    return result
