"""POST /api/extension/usage through a real ``issuer serve`` vs the RPC itself.

Both sides spend 1 credit per request from one of the 1,000 org pools at
random, with org-scoped access tokens (HS256) for ``user_s<k>`` in
``org_s<k>``. The baseline is the same RPC (``Rpc.deduct_credits_pooled``)
through the same kind of pool (``PsycopgRpc``, ``DATABASE_POOL_SIZE`` = 10)
driven by the same number of client threads in this process.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench import pg, seed
from bench.context import Ctx
from bench.report import Result, Row
from bench.tokens import issuer_env
from issuer.claims import TOKEN_TYPE_ACCESS, OrgAttribution, build_claims
from issuer.dev.fake_clerk import FakeClerk
from issuer.dev.served import issuer_serve
from issuer.rpc import PsycopgRpc, Rpc
from issuer.settings import load_settings
from issuer.signing import KeyRing

POOL_SIZE = 10


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:13])  # utime stime
    return ticks / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(int(c)) for c in children)


@contextmanager
def serve(env: dict[str, str], log_dir: Path, workers: int = 1) -> Iterator[tuple[str, int]]:
    """A real `issuer serve` (issuer.dev.served); yields its URL and pid (for CPU time)."""
    with issuer_serve(env, log_dir, workers=workers) as served:
        yield served.url, served.process.pid


def load(worker: Callable[[int], int], clients: int, seconds: float) -> tuple[float, Counter[int]]:
    """Run ``worker(i)`` in threads i = 0..clients-1 for ``seconds``; (calls/s, status counts)."""
    counts: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def run(i: int) -> None:
        local: Counter[int] = Counter()
        start.wait()
        while time.perf_counter() < deadline[0]:
            local[worker(i)] += 1
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return sum(counts.values()) / elapsed, counts


def mint_tokens(url: str, keys: KeyRing, rpc: Rpc, n: int) -> list[tuple[int, str]]:
    out = []
    for k in range(1, n + 1):
        row = rpc.resolve_org_attribution(f"user_s{k}", f"org_s{k}")
        assert row is not None
        claims = build_claims(
            f"user_s{k}",
            f"user_s{k}@bench.invalid",
            TOKEN_TYPE_ACCESS,
            OrgAttribution.from_rpc(row, org_role="org:member"),
            issuer=keys.issuer,
            audience=keys.audience,
            ttl_seconds=3600,
        )
        out.append((k, keys.sign(claims)))
    return out


def _against_rpc(
    ctx: Ctx, env: dict[str, str], tokens: list[tuple[int, str]], rpc: Rpc, workers: int
) -> Row:
    """HTTP through ``issuer serve --workers N`` and the RPC, back to back, per run."""
    clients = ctx.config.http_clients
    with serve(env, ctx.workdir, workers=workers) as (base_url, server_pid):
        # Made before any timing: an httpx.Client builds an SSL context.
        http_clients = [httpx.Client(base_url=base_url, timeout=30) for _ in range(clients)]

        def http_call(i: int) -> int:
            _k, token = random.choice(tokens)
            r = http_clients[i].post(
                "/api/extension/usage",
                json={"amount": 1, "description": "bench"},
                headers={"Authorization": f"Bearer {token}"},
            )
            return r.status_code

        def rpc_call(_i: int) -> int:
            k = random.randint(1, seed.SPREAD)
            res = rpc.deduct_credits_pooled(f"user_s{k}", 1, "bench", f"org_s{k}")
            return 200 if res.ok else 402

        load(http_call, clients, 0.5)  # warm-up: connections, plans
        load(rpc_call, clients, 0.5)
        http_rates, rpc_rates, ratios = [], [], []
        cpu: dict[str, list[float]] = {"server": [], "http client": [], "rpc client": []}
        problems: list[str] = []
        for run in range(ctx.config.runs):
            pair: dict[str, float] = {}
            order = [("http", http_call), ("rpc", rpc_call)]
            if run % 2:
                order.reverse()
            for name, fn in order:
                with pg.connect(ctx.url) as conn:
                    before = seed.balance(conn, seed.ORG_SPREAD)
                    mark = seed.ledger_mark(conn)
                server0, client0 = cpu_seconds(server_pid), time.process_time()
                rate, counts = load(fn, clients, ctx.config.seconds)
                done = max(1, sum(counts.values()))
                client_cpu = (time.process_time() - client0) / done * 1e6
                if name == "http":
                    cpu["server"].append((cpu_seconds(server_pid) - server0) / done * 1e6)
                    cpu["http client"].append(client_cpu)
                else:
                    cpu["rpc client"].append(client_cpu)
                with pg.connect(ctx.url) as conn:
                    spent = before - seed.balance(conn, seed.ORG_SPREAD)
                    rows = seed.ledger_rows_since(conn, mark)
                n200 = counts.get(200, 0)
                if set(counts) != {200}:
                    problems.append(f"{name}: statuses {dict(counts)}")
                if spent != n200 or rows != n200:
                    problems.append(f"{name}: {n200} ok, spent {spent}, rows {rows}")
                pair[name] = rate
            http_rates.append(pair["http"])
            rpc_rates.append(pair["rpc"])
            ratios.append(pair["http"] / pair["rpc"])
        for c in http_clients:
            c.close()
    with pg.connect(ctx.url) as conn:
        check = seed.consistency_problems(conn)
    r = pg.median(ratios)
    if problems:
        correctness = "MISMATCH: " + problems[0]
    else:
        correctness = "exact, check empty" if check == 0 else f"CHECK: {check} pools differ"
    notes = [n for n in (pg.spread_note(http_rates), pg.spread_note(rpc_rates)) if n]
    notes.append(
        "CPU per request: " + ", ".join(f"{k} {pg.median(v):,.0f} µs" for k, v in cpu.items() if v)
    )
    return Row(
        scenario=f"POST /api/extension/usage ({workers} worker{'s' if workers > 1 else ''})",
        clients=str(clients),
        ours=f"{pg.median(http_rates):,.0f} req/s",
        baseline=f"{pg.median(rpc_rates):,.0f} calls/s",
        ratio=r,
        target="≥ 0.5×",
        met=r >= 0.5,
        correctness=correctness,
        note="; ".join(notes),
    )


def http_usage(ctx: Ctx) -> Result:
    started = time.monotonic()
    clients = ctx.config.http_clients
    result = Result(
        name="http-usage",
        title=f"POST /api/extension/usage at {clients} clients vs the RPC through the same pool",
        baseline_name=(
            f"Rpc.deduct_credits_pooled via PsycopgRpc(max_size={POOL_SIZE}), "
            f"{clients} threads, same pools, measured next to each server"
        ),
    )
    with FakeClerk() as clerk:
        env = issuer_env(ctx.url, clerk, "HS256")
        env["DATABASE_POOL_SIZE"] = str(POOL_SIZE)
        keys = KeyRing.from_settings(load_settings(env))
        rpc = Rpc(PsycopgRpc(ctx.url, max_size=POOL_SIZE, min_size=POOL_SIZE))
        try:
            tokens = mint_tokens(ctx.url, keys, rpc, seed.SPREAD)
            for workers in (1, 2):
                result.rows.append(_against_rpc(ctx, env, tokens, rpc, workers))
        finally:
            rpc.close()
    result.notes.append(
        "server: `issuer serve --workers N` (uvicorn; the default is 1 worker, and each worker "
        f"has its own pool of DATABASE_POOL_SIZE={POOL_SIZE}), HS256 org-scoped access tokens; "
        "clients: httpx, keep-alive, one client per thread; server, load generator and "
        "Postgres share the machine's cores; CPU per request from /proc (server process "
        "tree) and time.process_time (this process)"
    )
    result.seconds = time.monotonic() - started
    return result
