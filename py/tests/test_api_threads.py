"""issuer.api.threads.WorkerThreads: the usage route's blocking call off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from issuer.api.threads import WorkerThreads

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def test_results_exceptions_arguments_and_context_reach_the_caller() -> None:
    workers = WorkerThreads(2, name="t")

    def call(a: int, *, b: int) -> tuple[int, str, str]:
        return a + b, _var.get(), threading.current_thread().name

    async def main() -> None:
        _var.set("caller's")
        total, seen, thread = await workers.run(call, 1, b=2)
        assert (total, seen) == (3, "caller's")
        assert thread.startswith("t-") and thread != threading.current_thread().name

        def fail() -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            await workers.run(fail)
        assert (await workers.run(call, 0, b=0))[0] == 0  # the thread survived

    asyncio.run(main())


def test_at_most_threads_calls_at_once_and_the_rest_wait() -> None:
    workers = WorkerThreads(3)
    lock = threading.Lock()
    running, peak = [0], [0]

    def call(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(workers.run(call, i) for i in range(12))))

    assert asyncio.run(main()) == list(range(12))
    assert peak[0] == 3


def test_a_cancelled_caller_does_not_stop_the_call_or_the_pool() -> None:
    workers = WorkerThreads(1)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        finished.set()
        return "done"

    async def main() -> None:
        task = asyncio.ensure_future(workers.run(slow))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await workers.run(lambda: "next") == "next"  # waits for slow() first
        assert finished.is_set()

    asyncio.run(main())


def test_a_loop_closed_before_the_result_does_not_kill_the_thread() -> None:
    workers = WorkerThreads(1)
    release = threading.Event()

    async def abandon() -> None:
        pending = asyncio.ensure_future(workers.run(release.wait, 5))
        await asyncio.sleep(0.01)
        assert not pending.done()

    asyncio.run(abandon())  # the loop closes while the call still runs
    release.set()

    async def again() -> str:
        return await workers.run(lambda: "alive")

    assert asyncio.run(again()) == "alive"
