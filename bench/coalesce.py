"""Prototype: coalescing concurrent deductions of one pool into the batch RPC.

``python -m bench --scenario coalesce``. 64 client threads each make
deductions of 1 credit from the hot org pool, one at a time, waiting for
each answer, for ``seconds``:

* **direct**: each client calls ``deduct_credits_pooled`` on its own
  connection (what the issuer does today, one RPC per request);
* **coalesced**: each client hands its deduction to a per-pool queue and
  waits; ``DISPATCHERS`` threads, each with one connection, take whatever is
  queued (up to ``MAX_BATCH``), call ``deduct_credits_pooled_batch`` and
  answer each waiting client only after that call (its commit) returned —
  the shape the issuer's usage path would have.

Both in the same run, alternating; the ratio is coalesced / direct
deductions per second. Correctness: the pool fell by the successes, one
ledger row each, ``credit_consistency_check()`` empty.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field

from bench import pg, seed
from bench.context import Ctx
from bench.report import Result, Row

CLIENTS = 64
DISPATCHERS = 2
MAX_BATCH = 64
ORG = "org_hot"

DIRECT = "select ok from public.deduct_credits_pooled(%s, 1, 'bench', %s)"
BATCHED = "select ok from public.deduct_credits_pooled_batch(%s, %s::jsonb)"


@dataclass
class Pending:
    user: str
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False


def _direct(ctx: Ctx, seconds: float) -> int:
    stop = time.monotonic() + seconds
    counts = [0] * CLIENTS

    def client(i: int) -> None:
        with pg.connect(ctx.url) as conn:
            conn.execute("set role service_role")
            while time.monotonic() < stop:
                row = conn.execute(DIRECT, (f"user_hot_{i}", ORG), prepare=True).fetchone()
                counts[i] += 1 if row and row[0] else 0

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def _coalesced(ctx: Ctx, seconds: float) -> tuple[int, list[int]]:
    stop = time.monotonic() + seconds
    q: queue.Queue[Pending | None] = queue.Queue()
    counts = [0] * CLIENTS
    sizes: list[int] = []

    def dispatcher() -> None:
        with pg.connect(ctx.url) as conn:
            conn.execute("set role service_role")
            while True:
                first = q.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        q.put(None)
                        break
                    batch.append(nxt)
                reqs = [
                    {"clerk_user_id": p.user, "amount": 1, "description": "bench"} for p in batch
                ]
                rows = conn.execute(BATCHED, (ORG, json.dumps(reqs)), prepare=True).fetchall()
                sizes.append(len(batch))
                for p, (ok,) in zip(batch, rows, strict=True):
                    p.ok = bool(ok)
                    p.done.set()

    def client(i: int) -> None:
        while time.monotonic() < stop:
            p = Pending(f"user_hot_{i}")
            q.put(p)
            p.done.wait()
            counts[i] += 1 if p.ok else 0

    ds = [threading.Thread(target=dispatcher) for _ in range(DISPATCHERS)]
    cs = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in ds + cs:
        t.start()
    for t in cs:
        t.join()
    for _ in ds:
        q.put(None)
    for t in ds:
        t.join()
    return sum(counts), sizes


def coalesce(ctx: Ctx) -> Result:
    started = time.monotonic()
    seconds = ctx.config.seconds
    ratios: list[float] = []
    direct_rate: list[float] = []
    co_rate: list[float] = []
    all_sizes: list[int] = []
    problems: list[str] = []
    for run in range(ctx.config.runs):
        order = ["direct", "coalesced"] if run % 2 == 0 else ["coalesced", "direct"]
        got: dict[str, float] = {}
        for mode in order:
            with pg.connect(ctx.url) as conn:
                before = seed.balance(conn, seed.ORG_HOT)
                mark = seed.ledger_mark(conn)
            if mode == "direct":
                n = _direct(ctx, seconds)
            else:
                n, sizes = _coalesced(ctx, seconds)
                all_sizes.extend(sizes)
            with pg.connect(ctx.url) as conn:
                spent = before - seed.balance(conn, seed.ORG_HOT)
                rows = seed.ledger_rows_since(conn, mark)
            if spent != n or rows != n:
                problems.append(f"{mode}: {n} ok, balance fell by {spent}, {rows} rows")
            got[mode] = n / seconds
        direct_rate.append(got["direct"])
        co_rate.append(got["coalesced"])
        ratios.append(got["coalesced"] / got["direct"] if got["direct"] else 0.0)
    with pg.connect(ctx.url) as conn:
        check = seed.consistency_problems(conn)
    correctness = (
        "MISMATCH: " + problems[0]
        if problems
        else ("exact, check empty" if check == 0 else f"CHECK: {check} pools differ")
    )
    r = pg.median(ratios)
    result = Result(
        name="coalesce",
        title="prototype: coalescing one pool's concurrent deductions into the batch RPC",
        baseline_name="the same clients calling deduct_credits_pooled directly",
    )
    mean = sum(all_sizes) / len(all_sizes) if all_sizes else 0
    result.rows.append(
        Row(
            scenario=f"coalesced, {DISPATCHERS} dispatchers (deductions/s)",
            clients=str(CLIENTS),
            ours=f"{pg.median(co_rate):,.0f} /s",
            baseline=f"{pg.median(direct_rate):,.0f} /s",
            ratio=r,
            target="≥ 1.0×",
            met=r >= 1.0,
            correctness=correctness,
            note=f"batch size mean {mean:.1f}, max {max(all_sizes, default=0)}; "
            f"{len(all_sizes)} batch calls",
        )
    )
    result.notes.append(
        f"median of {ctx.config.runs} run(s) of {seconds:g} s; Python threads on the same "
        "2 cores as the server (a prototype of the issuer's path, not the HTTP server)"
    )
    result.seconds = time.monotonic() - started
    return result
