"""Value types of judging: what goes in (one epoch's results) and what comes out (decisions).

All frozen. Mappings passed in are copied, so a caller mutating its own dict later cannot change
a value that was already judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypeAlias

from ...competitions import COMPETITIONS, Metric

__all__ = [
    "GATE_METRICS",
    "METRIC_RANGES",
    "Decision",
    "DropReason",
    "Dropped",
    "Entrant",
    "EpochInput",
    "Exclusion",
    "ExclusionReason",
    "Fallback",
    "Judgement",
    "ModelResult",
    "RemainderShare",
    "Rule",
    "WeightsRule",
    "WinnerRecord",
]

Fallback: TypeAlias = Literal["miners", "none"] | tuple[int, ...]
"""Where weights go when no miner has a score: ``"miners"`` = equally over every uid without a
validator permit; ``"none"`` = nowhere; a tuple = equally over those uids. When that is nobody,
``EpochInput.burn_uid`` gets all the weight, or there are no weights at all (``no_payable_uid``),
never an all-zero vector. Validators never get weight (unless one is the burn uid)."""

_COMPETITION_NAMES = tuple(c.name for c in COMPETITIONS)

GATE_METRICS: Mapping[str, Metric] = {
    c.name: Metric.PESQ if c.sample_rate == 16000 else Metric.SI_SDR for c in COMPETITIONS
}
"""Per competition, the metric on which a result must beat the unprocessed input to be a
candidate at all (PESQ at 16 kHz, SI-SDR at 48 kHz; see docs/judging.md §3)."""

METRIC_RANGES: Mapping[Metric, tuple[float, float]] = {
    Metric.PESQ: (-0.5, 4.644),  # wideband PESQ of a perfect copy is 4.6439, narrowband 4.5486
    Metric.ESTOI: (-1.0, 1.0),
    Metric.SI_SDR: (-100.0, 100.0),
    Metric.SI_SIR: (-100.0, 100.0),
    Metric.SI_SAR: (-100.0, 100.0),
}
"""The values a dataset average can take (inclusive). ``parse_epoch_input`` refuses others."""


@dataclass(frozen=True, slots=True)
class ModelResult:
    """One miner model's benchmark on this epoch's dataset, for one competition.

    ``block`` is the chain block of the model's commitment (``None``: unknown, so the result can
    take part in dedup but never be a candidate). ``metrics`` maps a metric to the dataset
    average; a missing or non-finite average means "no score" for that metric. The hash and
    metadata fields are optional and only feed duplicate detection.
    """

    hotkey: str
    block: int | None
    metrics: Mapping[Metric, float]
    model_hash: str | None = None
    namespace: str | None = None
    name: str | None = None
    revision: str | None = None
    ckpt_hashes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", {Metric(m): float(v) for m, v in self.metrics.items()})
        object.__setattr__(self, "ckpt_hashes", frozenset(self.ckpt_hashes))

    @property
    def metadata(self) -> tuple[str, str, str] | None:
        """``(namespace, name, revision)`` when all three are known, else ``None``."""
        if self.namespace is None or self.name is None or self.revision is None:
            return None
        return (self.namespace, self.name, self.revision)

    def average(self, metric: Metric) -> float | None:
        """The finite average for ``metric``, or ``None``."""
        value = self.metrics.get(metric)
        return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class WinnerRecord:
    """A (competition, metric) winner as carried from one epoch to the next."""

    hotkey: str
    block: int
    average: float

    def to_dict(self) -> dict[str, object]:
        return {"hotkey": self.hotkey, "block": self.block, "average": self.average}


@dataclass(frozen=True, slots=True)
class EpochInput:
    """Everything judging needs for one epoch. The uid of a hotkey is its index in ``hotkeys``.

    ``validator_permits`` is empty (no uid has a permit) or one flag per uid. ``baseline``,
    ``unprocessed``, ``previous_winners`` and ``results`` are keyed by competition name;
    missing competitions and metrics mean "none".

    ``unprocessed`` holds the averages of this epoch's degraded inputs scored as if they were a
    model's output (``audio.unprocessed.score_unprocessed``); when a competition's gate metric
    (``GATE_METRICS``) is given, only results strictly above it are candidates. ``burn_uid``
    gets all the weight when no uid can be paid (instead of no weights at all).
    """

    hotkeys: tuple[str, ...]
    validator_permits: tuple[bool, ...] = ()
    baseline: Mapping[str, Mapping[Metric, float]] = field(default_factory=dict)
    previous_winners: Mapping[str, Mapping[Metric, WinnerRecord]] = field(default_factory=dict)
    results: Mapping[str, Sequence[ModelResult]] = field(default_factory=dict)
    fallback: Fallback = "miners"
    unprocessed: Mapping[str, Mapping[Metric, float]] = field(default_factory=dict)
    burn_uid: int | None = None

    def __post_init__(self) -> None:
        hotkeys = tuple(self.hotkeys)
        object.__setattr__(self, "hotkeys", hotkeys)
        object.__setattr__(self, "validator_permits", tuple(self.validator_permits))
        if len(set(hotkeys)) != len(hotkeys):
            raise ValueError("hotkeys: a hotkey appears twice")
        if self.validator_permits and len(self.validator_permits) != len(hotkeys):
            raise ValueError("validator_permits: needs one flag per hotkey")
        baseline = {
            c: {Metric(m): float(v) for m, v in ms.items()} for c, ms in self.baseline.items()
        }
        unprocessed = {
            c: {Metric(m): float(v) for m, v in ms.items()} for c, ms in self.unprocessed.items()
        }
        winners = {
            c: {Metric(m): w for m, w in ws.items()} for c, ws in self.previous_winners.items()
        }
        results = {c: tuple(rs) for c, rs in self.results.items()}
        for name in (*baseline, *unprocessed, *winners, *results):
            if name not in _COMPETITION_NAMES:
                raise ValueError(
                    f"unknown competition {name!r}; expected one of {', '.join(_COMPETITION_NAMES)}"
                )
        for name, rs in results.items():
            seen: set[str] = set()
            for r in rs:
                if r.hotkey in seen:
                    raise ValueError(f"results.{name}: hotkey {r.hotkey!r} has two results")
                seen.add(r.hotkey)
        if not isinstance(self.fallback, str):
            fallback = tuple(self.fallback)
            bad = [u for u in fallback if not 0 <= u < len(hotkeys) or self.has_permit(u)]
            if bad:
                raise ValueError(f"fallback: uids {bad} are unknown or hold a validator permit")
            object.__setattr__(self, "fallback", fallback)
        elif self.fallback not in ("miners", "none"):
            raise ValueError(f"fallback: expected 'miners', 'none' or uids, got {self.fallback!r}")
        for name, ms in unprocessed.items():
            if not all(math.isfinite(v) for v in ms.values()):
                raise ValueError(f"unprocessed.{name}: averages must be finite")
            if GATE_METRICS[name] not in ms:
                raise ValueError(
                    f"unprocessed.{name}: needs {GATE_METRICS[name]}, the competition's gate metric"
                )
        if self.burn_uid is not None and not 0 <= self.burn_uid < len(hotkeys):
            raise ValueError(f"burn_uid: uid {self.burn_uid} is not registered")
        object.__setattr__(self, "baseline", baseline)
        object.__setattr__(self, "unprocessed", unprocessed)
        object.__setattr__(self, "previous_winners", winners)
        object.__setattr__(self, "results", results)

    def has_permit(self, uid: int) -> bool:
        return bool(self.validator_permits) and self.validator_permits[uid]

    def uid_map(self) -> dict[str, int]:
        return {hk: uid for uid, hk in enumerate(self.hotkeys)}

    def gate(self, competition: str) -> float | None:
        """The unprocessed input's average on ``competition``'s gate metric, or ``None``."""
        return self.unprocessed.get(competition, {}).get(GATE_METRICS[competition])


class Rule(StrEnum):
    """Which rule decided a (competition, metric)."""

    NO_CANDIDATE = "no_candidate"  # no candidate and no registered previous winner: nobody
    PREVIOUS_KEPT = "previous_kept"  # no candidate: the previous winner's hotkey keeps the share
    PREVIOUS_EXCLUDED = "previous_excluded"  # no candidate, previous winner excluded: nobody
    NO_INCUMBENT = "no_incumbent"  # the previous winner has no candidate result: best wins
    INCUMBENT_IS_BEST = "incumbent_is_best"  # the best result is the previous winner's own
    CHALLENGER_SURPASSED = "challenger_surpassed"  # best beat the incumbent by the threshold
    INCUMBENT_DEFENDED = "incumbent_defended"  # best did not clear the threshold: incumbent wins


class ExclusionReason(StrEnum):
    NO_AVERAGE = "no_average"  # metric missing or non-finite
    NO_BLOCK = "no_block"  # commitment block unknown
    EQUALS_BASELINE = "equals_baseline"  # average identical to the baseline model's
    NO_IMPROVEMENT = "no_improvement"  # gate metric not strictly above the unprocessed input's
    VALIDATOR_PERMIT = "validator_permit"  # the hotkey holds a validator permit: never paid


class WeightsRule(StrEnum):
    """Where the weights came from."""

    SCORES = "scores"  # the scores of uids without a validator permit, normalised
    FALLBACK = "fallback"  # nobody payable scored: the fallback's uids share equally
    BURN_UID = "burn_uid"  # no uid could be paid: all weight to the burn uid
    NO_PAYABLE_UID = "no_payable_uid"  # no uid could be paid, no burn uid: set no weights


class DropReason(StrEnum):
    UNREGISTERED = "unregistered"
    SAME_MODEL_HASH = "same_model_hash"
    SAME_METADATA = "same_metadata"
    SHARED_CHECKPOINT = "shared_checkpoint"


@dataclass(frozen=True, slots=True)
class Entrant:
    """A candidate in one (competition, metric)."""

    hotkey: str
    uid: int
    block: int
    average: float


@dataclass(frozen=True, slots=True)
class Exclusion:
    hotkey: str
    uid: int
    reason: ExclusionReason


@dataclass(frozen=True, slots=True)
class Dropped:
    """A result removed before judging; ``kept`` is the hotkey whose result it duplicates and
    ``kept_competition`` the competition that result was entered in (duplicates are found
    across competitions)."""

    competition: str
    hotkey: str
    uid: int | None
    reason: DropReason
    kept: str | None = None
    kept_competition: str | None = None


@dataclass(frozen=True, slots=True)
class RemainderShare:
    """``ratio`` is (average − s) / (winner − s); ``None`` when the winner's average is s."""

    hotkey: str
    uid: int
    average: float
    ratio: float | None
    share: float


@dataclass(frozen=True, slots=True)
class Decision:
    """How one (competition, metric) was decided, with every number that went into it.

    ``best`` is C, ``incumbent`` is H, ``previous`` is P. ``threshold`` and ``target`` are set
    when C had to beat H: C wins iff C > H and C >= ``target`` = H + |H| · ``threshold``.
    """

    competition: str
    metric: Metric
    rule: Rule
    best: Entrant | None
    incumbent: Entrant | None
    previous: WinnerRecord | None
    threshold: float | None
    target: float | None
    winner: WinnerRecord | None
    winner_uid: int | None
    winner_share: float
    remainder: tuple[RemainderShare, ...]
    remainder_unpaid: float
    excluded: tuple[Exclusion, ...]

    @property
    def paid(self) -> float:
        return math.fsum([self.winner_share, *(r.share for r in self.remainder)])


@dataclass(frozen=True, slots=True)
class Judgement:
    """The outcome of one epoch. Vectors are indexed by uid.

    ``winners`` feeds the next epoch's ``previous_winners``. ``weights_rule`` says where the
    weights come from; ``weights`` is empty (set no weights this epoch) when it is
    ``no_payable_uid``, never all zero. ``fallback_used`` is true for every rule but ``scores``.
    """

    competition_scores: Mapping[str, tuple[float, ...]]
    scores: tuple[float, ...]
    weights: tuple[float, ...]
    fallback_used: bool
    winners: Mapping[str, Mapping[Metric, WinnerRecord]]
    decisions: tuple[Decision, ...]
    dropped: tuple[Dropped, ...]
    weights_rule: WeightsRule = WeightsRule.SCORES
