"""The shape of every periodic step: do it, wait, repeat; never spin on errors.

A step returns the seconds until the next step (None: the loop's interval). An exception of one
of the ``retry_on`` types (say, the chain is unreachable) or a ``RetryLater`` (the outside world
refused, try again later) waits an exponential back-off instead; the first success resets it.
Anything else is a bug and crashes the task, which its supervisor logs and restarts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog

from ._tasks import Backoff, TaskStatus

__all__ = ["RetryLater", "every", "periodic"]

log = structlog.get_logger(__name__)


class RetryLater(Exception):
    """A step was refused; try again after ``delay`` (None: the back-off)."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        self.reason = reason
        self.delay = delay
        super().__init__(reason)


def _ignore(name: str, exc: Exception | None = None) -> None:
    return None


async def every(
    name: str,
    step: Callable[[], Awaitable[float | None]],
    *,
    interval: float,
    backoff: Backoff,
    retry_on: tuple[type[Exception], ...] = (),
    wait: Callable[[float], Awaitable[object]] = anyio.sleep,
    on_success: Callable[[str], None] = _ignore,
    on_retry: Callable[[str, Exception], None] = _ignore,
) -> None:
    """Run ``step`` forever. After a success call ``on_success`` and wait with ``wait`` (which
    may return early, e.g. on a new metagraph); after a retryable failure call ``on_retry`` and
    always sleep the full back-off."""
    while True:
        try:
            delay = await step()
        except RetryLater as exc:
            backoff_delay = backoff.next()
            delay = backoff_delay if exc.delay is None else max(exc.delay, backoff_delay)
            on_retry(name, exc)
            log.warning(
                f"{name}.retry_later",
                reason=exc.reason,
                failures=backoff.failures,
                retry_in_s=delay,
            )
        except retry_on as exc:
            delay = backoff.next()
            on_retry(name, exc)
            log.warning(
                f"{name}.failed_will_retry",
                error=str(exc) or repr(exc),
                error_type=type(exc).__name__,
                failures=backoff.failures,
                retry_in_s=delay,
            )
        else:
            if backoff.failures:
                log.info(f"{name}.recovered", after_failures=backoff.failures)
            backoff.reset()
            on_success(name)
            await wait(interval if delay is None else delay)
            continue
        await anyio.sleep(delay)


def periodic(
    name: str,
    step: Callable[[], Awaitable[float | None]],
    **every_kwargs: Any,
) -> Callable[[TaskStatus], Awaitable[None]]:
    """A supervisable task body: ready at once, then ``every(name, step, **every_kwargs)``."""

    async def run(status: TaskStatus) -> None:
        status.started()
        await every(name, step, **every_kwargs)

    return run
