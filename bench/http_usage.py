"""POST /api/extension/usage through a real ``issuer serve`` vs the RPC itself.

Two loads, each against its baseline in the same run:

* **spread**: 16 clients, each request spends 1 credit from one of the 1,000
  org pools at random, with org-scoped access tokens (HS256) for
  ``user_s<k>`` in ``org_s<k>``; 1 and 2 workers.
* **one org pool** (issue 17): 64 clients, 2 workers, every request spends 1
  credit from ``org_hot`` (client i as ``user_hot_<i>``). The server
  coalesces the pool's concurrent requests into ``deduct_credits_pooled_batch``
  (``USAGE_COALESCING``, on by default); the same load is also run with
  ``USAGE_COALESCING=off`` (one ``deduct_credits_pooled`` per request), for
  what coalescing buys over HTTP.

The baseline is the RPC without coalescing (``Rpc.deduct_credits_pooled``)
through the same kind of pool (``PsycopgRpc``, ``DATABASE_POOL_SIZE`` = 10)
driven by the same number of client threads in this process, on the same
pools.

The HTTP load generator is :class:`KeepAliveClient`: one blocking socket per
client thread, HTTP/1.1 keep-alive, each request pre-encoded once per token,
and a minimal response parser (status line, headers, a Content-Length body;
a chunked or malformed response is an error, ``Connection: close`` reconnects).
It replaced httpx, which spent ~1.6 ms of CPU per request in this process:
the load generator shares the machine's two cores with the server and
Postgres, and the comparison is the server's throughput against the RPC's,
whose client is in-process psycopg (~0.6 ms per call). Every 200 is also
checked to be a JSON body with ``"ok": true`` (anything else counts as status
0, a mismatch), besides the status counts and the ledger check.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import pg, seed
from bench.context import Ctx
from bench.report import Result, Row
from bench.tokens import issuer_env
from issuer.claims import TOKEN_TYPE_ACCESS, OrgAttribution, build_claims
from issuer.rpc import PsycopgRpc, Rpc
from issuer.settings import load_settings
from issuer.signing import KeyRing
from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import issuer_serve

POOL_SIZE = 10
HOT_CLIENTS = 64


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:13])  # utime stime
    return ticks / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(int(c)) for c in children)


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection, blocking, for one thread (module docstring)."""

    def __init__(self, base_url: str, timeout: float = 30) -> None:
        host, _, port = base_url.removeprefix("http://").rstrip("/").partition(":")
        self.address = (host, int(port or 80))
        self.host = f"{host}:{port}" if port else host
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def encode_post(self, path: str, body: dict[str, object], headers: dict[str, str]) -> bytes:
        """The bytes of a POST with a JSON body (made once, sent many times)."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {self.host}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buffer = sock, b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _recv(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-response")
        self.buffer += chunk

    def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request; (status, body). Reconnects once if the
        kept-alive connection was closed before the request was answered."""
        for attempt in (0, 1):
            sock = self.sock or self._connect()
            try:
                sock.sendall(request)
                return self._response(sock)
            except ConnectionError:
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._recv(sock)
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        status_line, *header_lines = head.split("\r\n")
        version, status, _reason = (status_line + " ").split(" ", 2)
        if version != "HTTP/1.1" or not status.isdigit():
            raise ValueError(f"bad status line {status_line!r}")
        length, close = None, False
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"bad header line {line!r}")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise ValueError("chunked responses are not expected here")
            elif name == "connection" and value.lower() == "close":
                close = True
        if length is None:
            raise ValueError("response without Content-Length")
        while len(self.buffer) < length:
            self._recv(sock)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if close:
            self.close()
        return int(status), body


@contextmanager
def serve(env: dict[str, str], log_dir: Path, workers: int = 1) -> Iterator[tuple[str, int]]:
    """A real `issuer serve` (issuer_dev.served); yields its URL and pid (for CPU time)."""
    # 400 s: on a shared, loaded machine (load average 20-38) two workers took minutes.
    with issuer_serve(env, log_dir, workers=workers, timeout=400) as served:
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


def mint_tokens(keys: KeyRing, rpc: Rpc, members: list[tuple[str, str]]) -> list[str]:
    """An org-scoped HS256 access token for each (clerk user, clerk org)."""
    out = []
    for user, org in members:
        row = rpc.resolve_org_attribution(p_clerk_user_id=user, p_clerk_org_id=org)
        assert row is not None
        claims = build_claims(
            user,
            f"{user}@bench.invalid",
            TOKEN_TYPE_ACCESS,
            OrgAttribution.from_rpc(row, org_role="org:member"),
            issuer=keys.issuer,
            audience=keys.audience,
            ttl_seconds=3600,
        )
        out.append(keys.sign(claims))
    return out


@dataclass(frozen=True)
class Load:
    """One HTTP load and its RPC baseline (module docstring)."""

    scenario: str
    clients: int
    workers: int
    members: list[tuple[str, str]]
    """(clerk user, clerk org) per token; client i of the spread load picks one at
    random per request, client i of a hot load is member i."""
    pools: str
    """seed.ORG_HOT or seed.ORG_SPREAD: whose balance must fall by the 200s."""
    target: float | None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def spread(self) -> bool:
        return self.pools == seed.ORG_SPREAD


def _against_rpc(ctx: Ctx, env: dict[str, str], keys: KeyRing, rpc: Rpc, spec: Load) -> Row:
    """HTTP through ``issuer serve --workers N`` and the RPC, back to back, per run."""
    clients, workers = spec.clients, spec.workers
    tokens = mint_tokens(keys, rpc, spec.members)
    with serve({**env, **dict(spec.env)}, ctx.workdir, workers=workers) as (base_url, server_pid):
        http_clients = [KeepAliveClient(base_url) for _ in range(clients)]
        requests = [
            http_clients[0].encode_post(
                "/api/extension/usage",
                {"amount": 1, "description": "bench"},
                {"Authorization": f"Bearer {token}"},
            )
            for token in tokens
        ]

        def http_call(i: int) -> int:
            request = random.choice(requests) if spec.spread else requests[i]
            status, body = http_clients[i].send(request)
            if status == 200 and json.loads(body).get("ok") is not True:
                return 0  # a 200 that is not a charge: counted as a mismatch
            return status

        def rpc_call(i: int) -> int:
            user, org = random.choice(spec.members) if spec.spread else spec.members[i]
            res = rpc.deduct_credits_pooled(
                p_clerk_user_id=user, p_amount=1, p_description="bench", p_clerk_org_id=org
            )
            return 200 if res.ok else 402

        load(http_call, clients, 0.5)  # warm-up: connections, plans
        load(rpc_call, clients, 0.5)
        http_rates, rpc_rates, ratios = [], [], []
        cpu: dict[str, list[float]] = {"server": [], "http client": [], "rpc client": []}
        problems: list[str] = []
        per_tx: list[float] = []
        for run in range(ctx.config.runs):
            pair: dict[str, float] = {}
            order = [("http", http_call), ("rpc", rpc_call)]
            if run % 2:
                order.reverse()
            for name, fn in order:
                with pg.connect(ctx.url) as conn:
                    before = seed.balance(conn, spec.pools)
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
                    spent = before - seed.balance(conn, spec.pools)
                    rows = seed.ledger_rows_since(conn, mark)
                    if name == "http":
                        per_tx.append(rows / max(1, seed.transactions_since(conn, mark)))
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
    notes.append(f"HTTP: {pg.median(per_tx):.1f} deductions per transaction")
    notes.append(
        "CPU per request: " + ", ".join(f"{k} {pg.median(v):,.0f} µs" for k, v in cpu.items() if v)
    )
    return Row(
        scenario=spec.scenario,
        clients=str(clients),
        ours=f"{pg.median(http_rates):,.0f} req/s",
        baseline=f"{pg.median(rpc_rates):,.0f} calls/s",
        ratio=r,
        target="-" if spec.target is None else f"≥ {spec.target:g}×",
        met=None if spec.target is None else r >= spec.target,
        correctness=correctness,
        note="; ".join(notes),
    )


def loads(http_clients: int) -> list[Load]:
    """The scenario's loads, in order."""
    spread = [(f"user_s{k}", f"org_s{k}") for k in range(1, seed.SPREAD + 1)]
    hot = [(f"user_hot_{i}", "org_hot") for i in range(HOT_CLIENTS)]
    return [
        *(
            Load(
                f"POST /api/extension/usage ({w} worker{'s' if w > 1 else ''})",
                http_clients,
                w,
                spread,
                seed.ORG_SPREAD,
                0.5,
            )
            for w in (1, 2)
        ),
        Load(
            "POST /api/extension/usage, one org pool, coalesced, 2 workers (issue 17)",
            HOT_CLIENTS,
            2,
            hot,
            seed.ORG_HOT,
            1.0,
            (("USAGE_COALESCING", "on"),),
        ),
        Load(
            "POST /api/extension/usage, one org pool, USAGE_COALESCING=off, 2 workers",
            HOT_CLIENTS,
            2,
            hot,
            seed.ORG_HOT,
            None,
            (("USAGE_COALESCING", "off"),),
        ),
    ]


def http_usage(ctx: Ctx) -> Result:
    started = time.monotonic()
    clients = ctx.config.http_clients
    result = Result(
        name="http-usage",
        title=(
            f"POST /api/extension/usage at {clients} clients (1,000 org pools) and at "
            f"{HOT_CLIENTS} clients (one org pool) vs the RPC through the same pool"
        ),
        baseline_name=(
            f"Rpc.deduct_credits_pooled via PsycopgRpc(max_size={POOL_SIZE}) without "
            "coalescing, as many threads as clients, same pools, measured next to each server"
        ),
    )
    with FakeClerk() as clerk:
        env = issuer_env(ctx.url, clerk, "HS256")
        env["DATABASE_POOL_SIZE"] = str(POOL_SIZE)
        keys = KeyRing.from_settings(load_settings(env))
        rpc = Rpc(PsycopgRpc(ctx.url, max_size=POOL_SIZE, min_size=POOL_SIZE))
        try:
            for spec in loads(clients):
                if ctx.config.clients and spec.clients not in ctx.config.clients:
                    continue  # --clients 16: the spread loads only; --clients 64: the hot ones
                result.rows.append(_against_rpc(ctx, env, keys, rpc, spec))
        finally:
            rpc.close()
    result.notes.append(
        "server: `issuer serve --workers N` (uvicorn; the default is 1 worker, and each worker "
        f"has its own pool of DATABASE_POOL_SIZE={POOL_SIZE}), HS256 org-scoped access tokens; "
        "clients: a minimal HTTP/1.1 keep-alive client (bench.http_usage.KeepAliveClient), "
        "one connection per thread; server, load generator and "
        "Postgres share the machine's cores; CPU per request from /proc (server process "
        "tree) and time.process_time (this process)"
    )
    result.seconds = time.monotonic() - started
    return result
