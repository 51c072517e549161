"""The four SoundsRight competitions, their metrics and the score budget, as data.

Everything here is immutable and import-cheap; other modules look competitions up by name
(``DENOISING_16000HZ``) or by chain id (1..4). The budget table sums to 100 across all
(competition, metric) pairs: each pair pays ``winner_share`` to its winner and shares
``remainder_pool`` among the other valid candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "COMPETITIONS",
    "METRICS",
    "TOTAL_BUDGET",
    "Competition",
    "Metric",
    "MetricBudget",
    "MetricSpec",
    "Task",
    "competition_by_chain_id",
    "get_competition",
]


class Task(StrEnum):
    DENOISING = "DENOISING"
    DEREVERBERATION = "DEREVERBERATION"


class Metric(StrEnum):
    PESQ = "PESQ"
    ESTOI = "ESTOI"
    SI_SDR = "SI_SDR"
    SI_SIR = "SI_SIR"
    SI_SAR = "SI_SAR"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Range of a metric. A file that cannot be scored gets ``floor``; higher is always better."""

    metric: Metric
    floor: float
    ceiling: float
    unit: str

    @property
    def needs_noisy(self) -> bool:
        """SI-* metrics decompose the output against the noise reference (degraded - clean)."""
        return self.metric in (Metric.SI_SDR, Metric.SI_SIR, Metric.SI_SAR)


METRICS: dict[Metric, MetricSpec] = {
    Metric.PESQ: MetricSpec(Metric.PESQ, floor=-0.5, ceiling=4.5, unit="MOS-LQO"),
    Metric.ESTOI: MetricSpec(Metric.ESTOI, floor=-1.0, ceiling=1.0, unit=""),
    Metric.SI_SDR: MetricSpec(Metric.SI_SDR, floor=-100.0, ceiling=100.0, unit="dB"),
    Metric.SI_SIR: MetricSpec(Metric.SI_SIR, floor=-100.0, ceiling=100.0, unit="dB"),
    Metric.SI_SAR: MetricSpec(Metric.SI_SAR, floor=-100.0, ceiling=100.0, unit="dB"),
}


@dataclass(frozen=True, slots=True)
class MetricBudget:
    """What one (competition, metric) sub-competition pays, in points out of 100."""

    metric: Metric
    winner_share: float
    remainder_pool: float

    def __post_init__(self) -> None:
        if self.winner_share < 0 or self.remainder_pool < 0:
            raise ValueError(f"{self.metric}: budget shares must be non-negative")


@dataclass(frozen=True, slots=True)
class Competition:
    name: str
    task: Task
    sample_rate: int
    chain_id: int
    budgets: tuple[MetricBudget, ...]

    def __post_init__(self) -> None:
        if self.name != f"{self.task}_{self.sample_rate}HZ":
            raise ValueError(f"competition name {self.name!r} does not match its task and rate")
        if len({b.metric for b in self.budgets}) != len(self.budgets):
            raise ValueError(f"{self.name}: a metric appears twice in the budget")

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return tuple(b.metric for b in self.budgets)

    @property
    def needs_noisy(self) -> bool:
        """True when scoring needs the degraded (noisy/reverberant) input as well."""
        return any(METRICS[m].needs_noisy for m in self.metrics)

    def budget(self, metric: Metric) -> MetricBudget:
        for b in self.budgets:
            if b.metric == metric:
                return b
        raise KeyError(f"{self.name} has no metric {metric}")

    @property
    def total_budget(self) -> float:
        return math.fsum(b.winner_share + b.remainder_pool for b in self.budgets)


def _b(metric: Metric, winner: float, pool: float) -> MetricBudget:
    return MetricBudget(metric, winner_share=winner, remainder_pool=pool)


COMPETITIONS: tuple[Competition, ...] = (
    Competition(
        "DENOISING_16000HZ",
        Task.DENOISING,
        16000,
        chain_id=1,
        budgets=(_b(Metric.PESQ, 6.0, 1.8), _b(Metric.ESTOI, 4.0, 1.2)),
    ),
    Competition(
        "DEREVERBERATION_16000HZ",
        Task.DEREVERBERATION,
        16000,
        chain_id=2,
        budgets=(_b(Metric.PESQ, 6.0, 1.2), _b(Metric.ESTOI, 4.0, 0.8)),
    ),
    Competition(
        "DENOISING_48000HZ",
        Task.DENOISING,
        48000,
        chain_id=3,
        budgets=(
            _b(Metric.ESTOI, 18.0, 2.0),
            _b(Metric.SI_SDR, 9.0, 1.0),
            _b(Metric.SI_SIR, 9.0, 1.0),
            _b(Metric.SI_SAR, 9.0, 1.0),
        ),
    ),
    Competition(
        "DEREVERBERATION_48000HZ",
        Task.DEREVERBERATION,
        48000,
        chain_id=4,
        budgets=(_b(Metric.ESTOI, 12.0, 3.0), _b(Metric.SI_SDR, 8.0, 2.0)),
    ),
)

TOTAL_BUDGET = 100.0

_BY_NAME = {c.name: c for c in COMPETITIONS}
_BY_CHAIN_ID = {c.chain_id: c for c in COMPETITIONS}


def get_competition(name: str) -> Competition:
    """Look a competition up by name (case-insensitive); ``KeyError`` lists the valid names."""
    try:
        return _BY_NAME[name.strip().upper()]
    except KeyError:
        raise KeyError(
            f"unknown competition {name!r}; expected one of {', '.join(_BY_NAME)}"
        ) from None


def competition_by_chain_id(chain_id: int) -> Competition:
    try:
        return _BY_CHAIN_ID[chain_id]
    except KeyError:
        raise KeyError(f"unknown competition id {chain_id}; expected 1..4") from None
