"""Supervised long-lived tasks on anyio: readiness, back-off and crash-restart.

A daemon starts each task with ``await tg.start(supervise, name, fn, ...)``: ``fn(task_status)``
runs until it calls ``task_status.started(value)`` and the caller gets that value (a bound
address, say); a failure before that goes to the caller, so a daemon that cannot bind its port
fails to start. After it is ready, a crash (or an unexpected return) is logged with its traceback
and ``fn`` is restarted after an exponential back-off, so nothing the outside world does (a peer's
garbage, a dropped chain) ends the daemon. Cancellation always passes through.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.abc import TaskStatus as _AnyioTaskStatus

__all__ = ["Backoff", "Changes", "TaskStatus", "start_supervised", "supervise"]

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
    """What a supervised task gets: ``started(value)`` once it is ready (anyio's ``TaskStatus``)."""

    def started(self, value: Any = None) -> None: ...


class _Once:
    """Forwards the first ``started`` to the caller's status; later runs have nobody waiting."""

    def __init__(self, status: _AnyioTaskStatus[Any]) -> None:
        self._status: _AnyioTaskStatus[Any] | None = status
        self.is_started = False

    def started(self, value: Any = None) -> None:
        if self._status is not None and not self.is_started:
            self.is_started = True
            self._status.started(value)
            self._status = None


async def supervise(
    name: str,
    fn: Callable[[TaskStatus], Awaitable[None]],
    *,
    backoff: Backoff,
    on_crash: Callable[[str], None] = lambda _: None,
    on_run: Callable[[str], None] = lambda _: None,
    task_status: _AnyioTaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``fn`` forever, restarting it after a crash (or an unexpected return).

    A crash before the first ``started`` is not retried: it is the caller's start-up failure.
    The back-off starts again once a run has lasted longer than its maximum.
    """
    status = _Once(task_status)
    while True:
        began = anyio.current_time()
        on_run(name)
        error: Exception | None = None
        try:
            await fn(status)
        except Exception as exc:
            if not status.is_started:
                raise
            error = exc
        if not status.is_started:
            raise RuntimeError(f"task {name} ended before it was ready")
        if anyio.current_time() - began > backoff.maximum:
            backoff.reset()
        delay = backoff.next()
        on_crash(name)
        if error is None:
            log.error("task.returned", task=name, restart_in_s=delay)
        else:
            log.error("task.crashed", task=name, restart_in_s=delay, exc_info=error)
        await anyio.sleep(delay)


async def start_supervised(
    tg: TaskGroup,
    name: str,
    fn: Callable[[TaskStatus], Awaitable[None]],
    *,
    backoff: Backoff,
    on_crash: Callable[[str], None] = lambda _: None,
    on_run: Callable[[str], None] = lambda _: None,
) -> Any:
    """Start ``supervise(name, fn)`` in ``tg`` and return the value ``fn`` reports when ready."""
    return await tg.start(
        partial(supervise, name, fn, backoff=backoff, on_crash=on_crash, on_run=on_run), name=name
    )


class Changes:
    """A version counter that tasks can wait on (``bump`` wakes every waiter)."""

    def __init__(self) -> None:
        self.version = 0
        self._event: anyio.Event | None = None

    def bump(self) -> None:
        self.version += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait_newer(self, seen: int, max_wait_s: float = math.inf) -> int:
        """The version once it is newer than ``seen``, or after ``max_wait_s`` seconds."""
        if self.version <= seen:
            if self._event is None:
                self._event = anyio.Event()
            event = self._event
            with anyio.move_on_after(max_wait_s):
                await event.wait()
        return self.version
