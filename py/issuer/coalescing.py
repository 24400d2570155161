"""Coalescing concurrent deductions from one org pool into one batch call (issue 17).

A hot org pool serializes on its row lock: one deduction per durable commit.
``deduct_credits_pooled_batch`` applies many deductions to one pool in one
transaction (one row update, one commit, each element its own result, ledger
row and idempotency key). :class:`Coalescer` feeds it from the usage route:

* **Per pool, one batch in flight** (per process). A request for a pool with
  no batch in flight is sent at once, alone: no added wait when the pool is
  idle. Requests that arrive while a batch is in flight queue up and go
  together as the next batch (up to :data:`MAX_BATCH`; the rest in the one
  after).
* **A batch of one is the single call** ``deduct_credits_pooled``, exactly as
  without coalescing.
* **Each answer waits for its batch's commit**: the batch is one statement in
  autocommit, so its results exist only once it committed; each waiter gets
  its own element's result.
* **Refused as a whole** (``22023`` for one bad element, ``23505`` for a key
  reused with other arguments, or any error but an unavailable database):
  nothing was written, so each element is sent again as a single call and
  gets the single call's own answer (one bad request never fails its
  neighbours).
* **Database unavailable** (connection lost mid-batch, server restart,
  statement timeout, ...): every waiter of that batch gets
  :class:`~issuer.errors.DatabaseUnavailable` (503, ``Retry-After``). The
  batch either committed as a whole or not at all; a retry with the same
  ``Idempotency-Key`` replays or applies once, whichever batch or single call
  it lands in (the batch shares the single call's key namespace and
  fingerprint).

Correctness comes from the database (row lock, keys), not from this queue:
several worker processes each have their own queues and may each have a
batch of the same pool in flight; they serialize on the pool row.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from issuer.errors import DatabaseUnavailable
from issuer.rpc import BatchDeduction, CreditResult, Rpc

log = logging.getLogger(__name__)

#: Largest batch sent in one call (the RPC accepts up to 1,000). 64 = the
#: bench's client count; larger batches hold the row lock longer per commit.
MAX_BATCH = 64


@dataclass(slots=True)
class _Waiter:
    deduction: BatchDeduction
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[CreditResult]


@dataclass(slots=True)
class _PoolQueue:
    pending: list[_Waiter] = field(default_factory=list)


@dataclass
class CoalescerStats:
    """Counters for tests and the bench (per process)."""

    batches: int = 0
    """Calls of ``deduct_credits_pooled_batch`` (batches of 2 or more)."""
    batched: int = 0
    """Deductions sent in those calls."""
    singles: int = 0
    """Batches of one, sent as ``deduct_credits_pooled``."""
    fallbacks: int = 0
    """Batches refused as a whole and sent again as single calls."""
    unavailable: int = 0
    """Batches answered 503 (database unavailable)."""
    largest: int = 0


class Coalescer:
    """Per-pool queues in front of ``deduct_credits_pooled_batch`` (module docstring).

    ``deduct`` is awaited on any event loop; the calls run on ``executor``
    threads (one thread per pool with a batch in flight), and each result is
    handed back to its waiter's loop.
    """

    def __init__(self, rpc: Rpc, executor: Executor, *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.rpc = rpc
        self.executor = executor
        self.max_batch = max_batch
        self.stats = CoalescerStats()
        self._lock = threading.Lock()
        self._pools: dict[str, _PoolQueue] = {}
        """Pools with a batch in flight; their waiters for the next batch."""

    async def deduct(self, clerk_org_id: str, deduction: BatchDeduction) -> CreditResult:
        """Deduct from the org pool; return once the batch holding it committed.

        Raises what the single call raises for this element (``RpcError``
        400 / 409, ...), or ``DatabaseUnavailable`` when its batch's fate
        is unknown or it never ran.
        """
        loop = asyncio.get_running_loop()
        waiter = _Waiter(deduction, loop, loop.create_future())
        with self._lock:
            queue = self._pools.get(clerk_org_id)
            start = queue is None
            if queue is None:
                queue = self._pools[clerk_org_id] = _PoolQueue()
            queue.pending.append(waiter)
        if start:
            try:
                self.executor.submit(self._drain, clerk_org_id)
            except RuntimeError:  # executor shut down
                with self._lock:
                    self._pools.pop(clerk_org_id, None)
                raise DatabaseUnavailable("database unavailable: shutting down") from None
        return await waiter.future

    # -- the pool's thread ---------------------------------------------------
    def _drain(self, clerk_org_id: str) -> None:
        """Send the pool's batches one after another until nobody waits."""
        while True:
            with self._lock:
                queue = self._pools[clerk_org_id]
                batch = queue.pending[: self.max_batch]
                del queue.pending[: self.max_batch]
                if not batch:
                    del self._pools[clerk_org_id]
                    return
            # A request cancelled while still queued never starts (as a
            # deduction queued for a thread); one already sent is charged.
            batch = [w for w in batch if not w.future.cancelled()]
            if batch:
                try:
                    self._send(clerk_org_id, batch)
                except BaseException as exc:  # never leave a waiter hanging
                    log.exception("coalesced deduction failed")
                    for w in batch:
                        _settle(w, None, exc)

    def _send(self, clerk_org_id: str, batch: list[_Waiter]) -> None:
        if len(batch) == 1:
            self._count(singles=1)
            self._single(clerk_org_id, batch[0])
            return
        self._count(batches=1, batched=len(batch), largest=len(batch))
        try:
            results = self.rpc.deduct_batch(clerk_org_id, [w.deduction for w in batch])
        except DatabaseUnavailable as exc:
            # Committed as a whole or not at all, and we cannot tell which:
            # every waiter gets the 503; its retry with the same key is safe.
            self._count(unavailable=1)
            for w in batch:  # one exception object per waiter (each is raised on its own)
                _settle(w, None, DatabaseUnavailable(str(exc)))
            return
        except Exception:  # noqa: BLE001 - refused as a whole: nothing was written
            self._count(fallbacks=1)
            log.info("batch of %d refused as a whole; sending its elements one by one", len(batch))
            for w in batch:
                self._single(clerk_org_id, w)
            return
        for w, result in zip(batch, results, strict=True):
            _settle(w, result, None)

    def _count(self, *, largest: int = 0, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)
            self.stats.largest = max(self.stats.largest, largest)

    def _single(self, clerk_org_id: str, waiter: _Waiter) -> None:
        d = waiter.deduction
        try:
            result = self.rpc.deduct_credits_pooled(
                p_clerk_user_id=d.clerk_user_id,
                p_amount=d.amount,
                p_description=d.description,
                p_clerk_org_id=clerk_org_id,
                p_idempotency_key=d.idempotency_key,
                p_context=d.context,
            )
        except Exception as exc:  # noqa: BLE001 - the waiter's own answer
            _settle(waiter, None, exc)
            return
        _settle(waiter, result, None)


def _settle(waiter: _Waiter, result: CreditResult | None, exc: BaseException | None) -> None:
    """Hand the result (or error) to the waiter's event loop."""
    fut = waiter.future

    def deliver() -> None:
        if fut.done():  # cancelled meanwhile
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            assert result is not None
            fut.set_result(result)

    call: Callable[[], None] = deliver
    try:
        waiter.loop.call_soon_threadsafe(call)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
