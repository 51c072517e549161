"""Task plumbing for the miner's root task group: readiness, back-off and crash-restart.

``start(tg, fn, name=...)`` runs ``fn(status)`` in the group and waits until it calls
``status.started(value)`` (anyio's ``TaskGroup.start``); a failure before that goes to the caller.
``supervise`` keeps a long-lived task alive: a crash is logged with its traceback and the task is
restarted after an exponential back-off, so nothing the outside world does (a validator's garbage,
a dropped chain) ends the daemon. Cancellation always passes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import structlog

__all__ = ["Backoff", "Changes", "TaskStatus", "start", "supervise"]

log = structlog.get_logger(__name__)


class Backoff:
    """Exponential back-off: ``initial``, doubling per failure, capped at ``maximum``."""

    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        if initial <= 0 or maximum <= 0 or factor < 1:
            raise ValueError("back-off needs initial > 0, maximum > 0 and factor >= 1")
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.factor = factor
        self.failures = 0

    def next(self) -> float:
        """The wait after one more failure."""
        delay = min(self.maximum, self.initial * self.factor**self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class TaskStatus(Protocol):
    def started(self, value: Any = None) -> None: ...


class _FutureStatus:
    def __init__(self, fut: asyncio.Future[Any]) -> None:
        self._fut = fut

    @property
    def is_started(self) -> bool:
        return self._fut.done()

    def started(self, value: Any = None) -> None:
        if not self._fut.done():
            self._fut.set_result(value)


class _IgnoredStatus:
    """The status a restarted task gets: nobody waits for it any more."""

    def started(self, value: Any = None) -> None:
        return None


async def start(
    tg: asyncio.TaskGroup, fn: Callable[[TaskStatus], Coroutine[Any, Any, None]], *, name: str
) -> Any:
    """Start ``fn(status)`` in ``tg``; return the value it passes to ``status.started``."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(task: asyncio.Task[None]) -> None:
        if fut.done():
            return
        if task.cancelled():
            fut.cancel()
        elif (exc := task.exception()) is not None:
            fut.set_exception(exc)
        else:
            fut.set_exception(RuntimeError(f"task {name} ended before it was ready"))

    task = tg.create_task(fn(_FutureStatus(fut)), name=name)
    task.add_done_callback(done)
    return await fut


class Changes:
    """A version counter that tasks can wait on (``bump`` wakes every waiter)."""

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def bump(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait_newer(self, seen: int, max_wait_s: float) -> int:
        """The version once it is newer than ``seen``, or after ``max_wait_s`` seconds."""
        if self.version <= seen:
            event = self._event
            try:
                async with asyncio.timeout(max_wait_s):
                    await event.wait()
            except TimeoutError:
                pass
        return self.version


async def supervise(
    name: str,
    fn: Callable[[TaskStatus], Awaitable[None]],
    status: TaskStatus,
    *,
    backoff: Backoff,
    on_crash: Callable[[str], None] = lambda _: None,
    on_run: Callable[[str], None] = lambda _: None,
) -> None:
    """Run ``fn`` forever, restarting it after a crash (or an unexpected return).

    A crash before the first ``status.started`` is not retried: it is the caller's start-up
    failure. The back-off starts again once a run has lasted longer than its maximum.
    """
    loop = asyncio.get_running_loop()
    current: TaskStatus = status
    while True:
        began = loop.time()
        on_run(name)
        error: Exception | None = None
        try:
            await fn(current)
        except Exception as exc:
            if isinstance(current, _FutureStatus) and not current.is_started:
                raise
            error = exc
        if loop.time() - began > backoff.maximum:
            backoff.reset()
        delay = backoff.next()
        on_crash(name)
        if error is None:
            log.error("task.returned", task=name, restart_in_s=delay)
        else:
            log.error("task.crashed", task=name, restart_in_s=delay, exc_info=error)
        current = _IgnoredStatus()
        await asyncio.sleep(delay)
