"""What the miner's tasks know and report: one mutable ``MinerState`` shared in one event loop.

Tasks write their latest outcome here; ``/healthz`` and ``/metrics`` only read it. Times are wall
clock seconds (``clock()``), None until the event first happens.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..net import MetagraphCache
from ..runtime import Changes, ConnectionGuard, TaskBoard

__all__ = ["MinerState"]

Labels = tuple[tuple[str, str], ...]


@dataclass
class MinerState:
    hotkey: str
    competition: str
    namespace: str
    name: str
    revision: str
    commitment_wanted: str
    """The 64-hex commitment of the configured model."""
    clock: Callable[[], float] = time.time
    started_at: float = 0.0
    metagraph: MetagraphCache = field(default_factory=MetagraphCache)
    synced: Changes = field(default_factory=Changes)
    """Bumped after every successful metagraph sync."""
    sync_requests: Changes = field(default_factory=Changes)
    """Bumped to ask for a metagraph sync now (after our own chain write, to confirm it)."""
    last_sync: float | None = None
    sync_block: int | None = None
    uid: int | None = None
    registered: bool | None = None
    commitment_ok: bool | None = None
    commitment_block: int | None = None
    """The block our current commitment landed in (what validators compare to seed blocks)."""
    last_commitment_check: float | None = None
    last_commit: float | None = None
    endpoint_wanted: str | None = None
    endpoint_ok: bool | None = None
    last_endpoint_check: float | None = None
    last_serve: float | None = None
    last_feedback: float | None = None
    http_address: tuple[str, int] | None = None
    health_address: tuple[str, int] | None = None
    board: TaskBoard = field(default_factory=TaskBoard)
    """Each task's state (starting / running / retrying / restarting), last tick and error."""
    counters: Counter[tuple[str, Labels]] = field(default_factory=Counter)
    http_guard: ConnectionGuard | None = None
    """The signed server's connection guard (its counters go to ``/metrics``)."""

    def __post_init__(self) -> None:
        if not self.started_at:
            self.started_at = self.clock()
        self.board.clock = self.clock

    @property
    def tasks(self) -> dict[str, str]:
        """Task name -> state."""
        return {name: info.state for name, info in sorted(self.board.tasks.items())}

    def now(self) -> float:
        return self.clock()

    def count(self, metric: str, n: int = 1, **labels: str) -> None:
        """Add ``n`` to the counter ``metric`` with ``labels``."""
        self.counters[(metric, tuple(sorted(labels.items())))] += n

    def counter(self, metric: str, **labels: str) -> int:
        return self.counters[(metric, tuple(sorted(labels.items())))]

    def set_http_guard(self, guard: ConnectionGuard) -> None:
        self.http_guard = guard

    def task_running(self, name: str) -> None:
        self.board.running(name)

    def task_ticked(self, name: str) -> None:
        self.board.tick(name)

    def task_failed(self, name: str, error: BaseException) -> None:
        self.board.failed(name, f"{type(error).__name__}: {error}")

    def task_crashed(self, name: str) -> None:
        self.board.crashed(name)
        self.count("task_restarts_total", task=name)
