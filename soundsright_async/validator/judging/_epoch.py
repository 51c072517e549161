"""One epoch end: dedup each competition, decide every (competition, metric), sum, weigh."""

from __future__ import annotations

import math

from ...competitions import COMPETITIONS, Metric
from ._dedup import dedup_results
from ._types import Decision, Dropped, EpochInput, Judgement, WinnerRecord
from ._weights import total_scores, weights_from_scores
from ._winners import judge_metric

__all__ = ["judge_epoch"]


def judge_epoch(epoch: EpochInput) -> Judgement:
    """Judge one epoch. Pure and deterministic: the order of the input lists does not matter."""
    uids = epoch.uid_map()
    n = len(epoch.hotkeys)
    decisions: list[Decision] = []
    dropped: list[Dropped] = []
    competition_scores: dict[str, tuple[float, ...]] = {}
    winners: dict[str, dict[Metric, WinnerRecord]] = {}
    for comp in COMPETITIONS:
        kept, gone = dedup_results(comp.name, epoch.results.get(comp.name, ()), uids)
        dropped.extend(gone)
        paid: list[list[float]] = [[] for _ in range(n)]
        winners[comp.name] = {}
        for metric in comp.metrics:
            decision = judge_metric(
                comp,
                metric,
                kept,
                uids,
                epoch.baseline.get(comp.name, {}).get(metric),
                epoch.previous_winners.get(comp.name, {}).get(metric),
            )
            decisions.append(decision)
            if decision.winner is not None and decision.winner_uid is not None:
                winners[comp.name][metric] = decision.winner
                paid[decision.winner_uid].append(decision.winner_share)
            for share in decision.remainder:
                paid[share.uid].append(share.share)
        competition_scores[comp.name] = tuple(math.fsum(p) for p in paid)
    scores = total_scores(competition_scores, n)
    weights, fallback_used = weights_from_scores(scores, epoch.validator_permits, epoch.fallback)
    return Judgement(
        competition_scores=competition_scores,
        scores=scores,
        weights=weights,
        fallback_used=fallback_used,
        winners=winners,
        decisions=tuple(decisions),
        dropped=tuple(dropped),
    )
