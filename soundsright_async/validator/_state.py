"""What the validator's tasks share in its one event loop, and what its status server reads.

Durable facts live in the ``Store``; this holds the live view: the latest metagraph and head
block, the current epoch, what is running now, the task board, loop lag and Prometheus metrics,
and the ``Changes`` counters tasks wake each other with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..chain import Block, Metagraph
from ..runtime import Changes, LoopLag, TaskBoard
from ._epochs import EpochClock
from ._store import EpochRow

if TYPE_CHECKING:
    from ..sandbox.runner import EngineLoad

__all__ = ["Metrics", "ValidatorState"]


class Metrics:
    """The daemon's Prometheus metrics, in a registry of its own (``GET /metrics``)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.results = Counter(
            "soundsright_results", "Benchmark results stored, by outcome", ["outcome"], registry=r
        )
        self.steps = Histogram(
            "soundsright_step_seconds",
            "Duration of benchmark steps",
            ["step"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
            registry=r,
        )
        self.queue = Gauge(
            "soundsright_queue_depth", "Work waiting, by queue", ["queue"], registry=r
        )
        self.loop_lag = Gauge(
            "soundsright_event_loop_lag_seconds", "Event-loop wake-up lag", ["quantile"], registry=r
        )
        self.weights = Counter(
            "soundsright_weight_attempts",
            "Weight-setting attempts, by status",
            ["status"],
            registry=r,
        )
        self.discovery = Counter(
            "soundsright_discovery_answers",
            "Discovery answers, by outcome",
            ["outcome"],
            registry=r,
        )
        self.feedback = Counter(
            "soundsright_feedback", "Feedback deliveries, by outcome", ["outcome"], registry=r
        )
        self.epoch = Gauge("soundsright_epoch", "Current epoch number", registry=r)
        self.blocks_left = Gauge(
            "soundsright_epoch_blocks_left", "Blocks to the epoch end", registry=r
        )
        self.task_stale = Gauge(
            "soundsright_task_stale", "1 when a task has not ticked in time", ["task"], registry=r
        )
        self.engine_up = Gauge(
            "soundsright_engine_up", "1 when a container engine is in use", ["engine"], registry=r
        )
        self.engine_models = Gauge(
            "soundsright_engine_models",
            "Models placed on a container engine (building or running)",
            ["engine"],
            registry=r,
        )


@dataclass
class ValidatorState:
    hotkey: str
    clock: EpochClock
    competitions: tuple[str, ...]
    now: Callable[[], float] = time.time
    board: TaskBoard = field(default_factory=TaskBoard)
    lag: LoopLag = field(default_factory=LoopLag)
    metrics: Metrics = field(default_factory=Metrics)
    metagraph: Metagraph | None = None
    head: Block | None = None
    engines: Callable[[], list[EngineLoad]] = list
    """The container engines' loads (the runner's, once the engines are open)."""
    epoch: EpochRow | None = None
    synced: Changes = field(default_factory=Changes)
    """Bumped after every metagraph sync."""
    epochs: Changes = field(default_factory=Changes)
    """Bumped when the current epoch changes or its datasets become ready."""
    work: Changes = field(default_factory=Changes)
    """Bumped when the scheduler may have new work (candidates, datasets, a finished run)."""
    outbox: Changes = field(default_factory=Changes)
    judged: Changes = field(default_factory=Changes)
    running: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(hotkey, competition) -> {epoch, step, since}: benchmarks in flight."""
    started_at: float = 0.0
    ready: bool = False

    def __post_init__(self) -> None:
        if not self.started_at:
            self.started_at = self.now()
        self.board.clock = self.now

    def inflight(self, epoch: int) -> int:
        return sum(1 for r in self.running.values() if r["epoch"] == epoch)

    def blocks_left(self) -> int | None:
        if self.epoch is None or self.head is None:
            return None
        return self.clock.blocks_left(self.epoch.number, self.head.number)
