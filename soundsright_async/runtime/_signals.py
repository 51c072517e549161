"""SIGTERM/SIGINT become a stop request (anyio's signal receiver on the daemon's loop)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

__all__ = ["stop_on_signals"]

log = structlog.get_logger(__name__)


async def stop_on_signals(
    stop: Callable[[], None],
    *,
    task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``stop()`` on every SIGTERM or SIGINT until cancelled (start it with ``tg.start`` so
    the handlers are installed before the daemon reports ready)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal.received", signal=signal.Signals(signum).name)
            stop()
