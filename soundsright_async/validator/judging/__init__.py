"""Judging: one epoch's benchmark results in, winners, scores and chain weights out.

Pure functions over frozen dataclasses, no I/O. ``judge_epoch`` runs the whole pipeline:

1. drop results of unregistered hotkeys and duplicates, across competitions (``dedup_epoch``);
2. per (competition, metric), exclude validator-permit holders and results that do not beat the
   unprocessed input, pick the winner with the improvement threshold and split the remainder
   pool (``judge_metric``, ``remainder_shares``), recording a ``Decision``;
3. sum the competitions per uid and normalise to weights, or say that no uid can be paid
   (``total_scores``, ``decide_weights``).

The rules, in user terms, are in ``docs/judging.md``.
"""

from __future__ import annotations

from ._codec import decision_to_dict, judgement_to_dict, parse_epoch_input, parse_epoch_json
from ._dedup import dedup_epoch, dedup_results
from ._epoch import judge_epoch
from ._types import (
    GATE_METRICS,
    METRIC_RANGES,
    Decision,
    Dropped,
    DropReason,
    Entrant,
    EpochInput,
    Exclusion,
    ExclusionReason,
    Fallback,
    Judgement,
    ModelResult,
    RemainderShare,
    Rule,
    WeightsRule,
    WinnerRecord,
)
from ._weights import decide_weights, total_scores, weights_from_scores
from ._winners import (
    DECAY_BLOCKS,
    THRESHOLD_END,
    THRESHOLD_START,
    improvement_factor,
    judge_metric,
    remainder_shares,
    surpasses,
)

__all__ = [
    "DECAY_BLOCKS",
    "GATE_METRICS",
    "METRIC_RANGES",
    "THRESHOLD_END",
    "THRESHOLD_START",
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
    "decide_weights",
    "decision_to_dict",
    "dedup_epoch",
    "dedup_results",
    "improvement_factor",
    "judge_epoch",
    "judge_metric",
    "judgement_to_dict",
    "parse_epoch_input",
    "parse_epoch_json",
    "remainder_shares",
    "surpasses",
    "total_scores",
    "weights_from_scores",
]
