"""Judging: one epoch's benchmark results in, winners, scores and chain weights out.

Pure functions over frozen dataclasses, no I/O. ``judge_epoch`` runs the whole pipeline:

1. per competition, drop results of unregistered hotkeys and duplicates (``dedup_results``);
2. per (competition, metric), pick the winner with the improvement threshold and split the
   remainder pool (``judge_metric``, ``remainder_shares``), recording a ``Decision``;
3. sum the competitions per uid and normalise to weights (``total_scores``,
   ``weights_from_scores``).

The rules, in user terms, are in ``docs/judging.md``.
"""

from __future__ import annotations

from ._codec import decision_to_dict, judgement_to_dict, parse_epoch_input
from ._dedup import dedup_results
from ._epoch import judge_epoch
from ._types import (
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
    WinnerRecord,
)
from ._weights import total_scores, weights_from_scores
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
    "WinnerRecord",
    "decision_to_dict",
    "dedup_results",
    "improvement_factor",
    "judge_epoch",
    "judge_metric",
    "judgement_to_dict",
    "parse_epoch_input",
    "remainder_shares",
    "surpasses",
    "total_scores",
    "weights_from_scores",
]
