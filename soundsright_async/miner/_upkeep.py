"""The shape of every chain upkeep loop: do one step, wait, repeat; never spin on errors.

A step returns the seconds until the next step (None: the loop's interval). A ``ChainError``
(the chain is unreachable or answered nonsense) or a ``RetryLater`` (the chain refused a write)
waits an exponential back-off instead; the first success resets it. Anything else is a bug and
crashes the task, which its supervisor logs and restarts (``_tasks.supervise``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from ..chain import ChainError
from ._state import MinerState
from ._tasks import Backoff

__all__ = ["RetryLater", "every"]

log = structlog.get_logger(__name__)


class RetryLater(Exception):
    """The chain refused a write; try again after ``delay`` (None: the back-off)."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        self.reason = reason
        self.delay = delay
        super().__init__(reason)


async def every(
    name: str,
    step: Callable[[], Awaitable[float | None]],
    *,
    interval: float,
    backoff: Backoff,
    state: MinerState,
    wait: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Run ``step`` forever. After a success wait with ``wait`` (which may return early, e.g.
    on a new metagraph); after a failure always sleep the full back-off."""
    while True:
        state.tasks[name] = "running"
        try:
            delay = await step()
        except ChainError as exc:
            delay = backoff.next()
            state.count("chain_errors_total", task=name)
            log.warning(
                f"{name}.chain_error",
                error=str(exc),
                failures=backoff.failures,
                retry_in_s=delay,
            )
        except RetryLater as exc:
            backoff_delay = backoff.next()
            delay = backoff_delay if exc.delay is None else max(exc.delay, backoff_delay)
            log.warning(
                f"{name}.retry_later",
                reason=exc.reason,
                failures=backoff.failures,
                retry_in_s=delay,
            )
        else:
            if backoff.failures:
                log.info(f"{name}.recovered", after_failures=backoff.failures)
            backoff.reset()
            await wait(interval if delay is None else delay)
            continue
        await asyncio.sleep(delay)
