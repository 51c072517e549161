"""What every daemon shares, built on anyio (asyncio backend).

* ``supervise`` keeps a long-lived task alive: started with readiness (``TaskGroup.start``), a
  crash after it is ready is logged and the task restarted with exponential back-off;
* ``every`` is the shape of a periodic step: do it, wait, repeat; retryable errors wait a
  back-off instead of the interval (never a spin);
* ``TaskBoard`` records each task's state and last tick for ``/healthz``; ``watch_loop_lag``
  measures how late the event loop wakes up;
* ``serve_app`` binds an aiohttp app, reports the address as its readiness value and serves until
  cancelled, behind a ``ConnectionGuard`` when given ``ServerLimits`` (header/body deadlines,
  a connection cap with a reserve for admitted callers, summary logging of refusals; ``admit``
  marks a request's connection as admitted); ``SdNotifier`` + ``ping_watchdog`` speak systemd's
  notify protocol; ``stop_on_signals`` turns SIGTERM/SIGINT into a stop request.
"""

from __future__ import annotations

from ._board import LoopLag, TaskBoard, TaskInfo, watch_loop_lag
from ._guard import ConnectionGuard, ConnectionStats, ServerLimits, admit
from ._notify import SdNotifier, ping_watchdog
from ._periodic import RetryLater, every, periodic
from ._serve import serve_app
from ._signals import stop_on_signals
from ._tasks import Backoff, Changes, TaskStatus, start_supervised, supervise

__all__ = [
    "Backoff",
    "Changes",
    "ConnectionGuard",
    "ConnectionStats",
    "LoopLag",
    "RetryLater",
    "SdNotifier",
    "ServerLimits",
    "TaskBoard",
    "TaskInfo",
    "TaskStatus",
    "admit",
    "every",
    "periodic",
    "ping_watchdog",
    "serve_app",
    "start_supervised",
    "stop_on_signals",
    "supervise",
    "watch_loop_lag",
]
