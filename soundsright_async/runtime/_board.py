"""What a daemon's tasks report about themselves, for ``/healthz``, ``/status`` and ``/metrics``.

Each task has a ``TaskInfo``: its state (``starting``, ``running``, ``retrying`` after a failed
step, ``restarting`` after a crash), the time of its last successful tick, consecutive failures and
the last error. A task is *stale* when it has not ticked within its ``max_age_s`` (set per task at
registration: about three of its intervals). ``watch_loop_lag`` measures how late the loop wakes up
(a blocked loop shows here first).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["LoopLag", "TaskBoard", "TaskInfo", "watch_loop_lag"]


@dataclass(slots=True)
class TaskInfo:
    name: str
    max_age_s: float
    state: str = "starting"
    last_tick: float | None = None
    failures: int = 0
    restarts: int = 0
    last_error: str | None = None
    registered_at: float = 0.0

    def stale(self, now: float) -> bool:
        since = self.last_tick if self.last_tick is not None else self.registered_at
        return now - since > self.max_age_s

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_tick_age_s": None if self.last_tick is None else round(now - self.last_tick, 3),
            "stale": self.stale(now),
            "failures": self.failures,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }


@dataclass
class TaskBoard:
    clock: Callable[[], float] = time.time
    tasks: dict[str, TaskInfo] = field(default_factory=dict)

    def register(self, name: str, *, max_age_s: float) -> TaskInfo:
        info = self.tasks.get(name)
        if info is None:
            info = self.tasks[name] = TaskInfo(name, max_age_s, registered_at=self.clock())
        info.max_age_s = max_age_s
        return info

    def _info(self, name: str) -> TaskInfo:
        return self.tasks.get(name) or self.register(name, max_age_s=float("inf"))

    def running(self, name: str) -> None:
        info = self._info(name)
        if info.state in ("starting", "restarting"):
            info.state = "running"

    def tick(self, name: str) -> None:
        """One successful unit of work (a step, a loop turn)."""
        info = self._info(name)
        info.state, info.last_tick, info.failures = "running", self.clock(), 0

    def failed(self, name: str, error: BaseException | str) -> None:
        """A step failed and will be retried."""
        info = self._info(name)
        info.state = "retrying"
        info.failures += 1
        info.last_error = error if isinstance(error, str) else (str(error) or repr(error))

    def crashed(self, name: str) -> None:
        info = self._info(name)
        info.state = "restarting"
        info.restarts += 1

    def stale(self) -> list[str]:
        now = self.clock()
        return sorted(name for name, info in self.tasks.items() if info.stale(now))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: self.tasks[name].to_dict(now) for name in sorted(self.tasks)}


@dataclass
class LoopLag:
    """Recent wake-up delays of the event loop, in seconds (a ring of ``size`` samples)."""

    size: int = 600
    samples: deque[float] = field(default_factory=deque)
    total_samples: int = 0
    last: float = 0.0

    def add(self, lag: float) -> None:
        self.samples.append(lag)
        self.total_samples += 1
        self.last = lag
        while len(self.samples) > self.size:
            self.samples.popleft()

    def quantile(self, q: float) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def to_dict(self) -> dict[str, float]:
        return {
            "last_s": round(self.last, 6),
            "p50_s": round(self.quantile(0.5), 6),
            "p99_s": round(self.quantile(0.99), 6),
            "max_s": round(max(self.samples, default=0.0), 6),
        }


async def watch_loop_lag(lag: LoopLag, *, interval_s: float = 0.25) -> None:
    """Sleep ``interval_s`` forever and record how much later than asked the loop woke up."""
    while True:
        before = anyio.current_time()
        await anyio.sleep(interval_s)
        lag.add(max(0.0, anyio.current_time() - before - interval_s))
