"""Worker threads for the blocking call of an async route (the usage route's deduction).

Starlette's ``run_in_threadpool`` (anyio's ``to_thread.run_sync``) does more
per call than a route with one blocking call needs: a checkpoint (one more
pass of the event loop), a capacity limiter and a cancel scope. With this
pool the server spent about 0.2 ms less CPU per usage request (``python -m
bench --scenario http-usage``, six paired runs, ~2.1 -> ~1.95 ms).

Semantics, as with anyio's default limiter: at most ``threads`` calls
run at once and the others wait their turn; each call runs in a copy of the
caller's context (contextvars); its exception is raised in the caller; a
caller that is cancelled does not stop a call already running (it finishes
on its thread and its result is dropped).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Job = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[[], Any]
]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class WorkerThreads:
    """``threads`` daemon threads fed by one queue, all started by the first call.

    Idle threads wait on the queue and cost nothing; starting them all at
    once keeps the pool free of bookkeeping per call.
    """

    def __init__(self, threads: int = 40, name: str = "issuer-worker") -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self.name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on a worker thread; its result or exception here."""
        if not self._started:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call = functools.partial(fn, *args, **kwargs)
        self._jobs.put((loop, future, contextvars.copy_context(), call))
        return await future

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for i in range(self.threads):
                threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True).start()
            self._started = True

    def _work(self) -> None:
        while True:
            loop, future, context, call = self._jobs.get()
            result: Any = None
            error: BaseException | None = None
            try:
                result = context.run(call)
            except BaseException as exc:  # noqa: BLE001 -- delivered to the caller, never lost
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop was closed meanwhile: nobody waits
                pass
            del loop, future, context, call, result, error  # no references while idle
