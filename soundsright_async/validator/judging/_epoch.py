"""One epoch end: dedup the epoch, decide every (competition, metric), sum, weigh."""

from __future__ import annotations

import math

from ...competitions import COMPETITIONS, Metric
from ._dedup import dedup_epoch
from ._types import Decision, EpochInput, Judgement, WeightsRule, WinnerRecord
from ._weights import decide_weights, total_scores
from ._winners import judge_metric

__all__ = ["judge_epoch"]


def judge_epoch(epoch: EpochInput) -> Judgement:
    """Judge one epoch. Pure and deterministic: the order of the input lists does not matter."""
    uids = epoch.uid_map()
    n = len(epoch.hotkeys)
    decisions: list[Decision] = []
    competition_scores: dict[str, tuple[float, ...]] = {}
    winners: dict[str, dict[Metric, WinnerRecord]] = {}
    kept, dropped = dedup_epoch(
        {comp.name: epoch.results.get(comp.name, ()) for comp in COMPETITIONS}, uids
    )
    for comp in COMPETITIONS:
        paid: list[list[float]] = [[] for _ in range(n)]
        winners[comp.name] = {}
        for metric in comp.metrics:
            decision = judge_metric(
                comp,
                metric,
                kept[comp.name],
                uids,
                epoch.baseline.get(comp.name, {}).get(metric),
                epoch.previous_winners.get(comp.name, {}).get(metric),
                gate=epoch.gate(comp.name),
                validator_permits=epoch.validator_permits,
            )
            decisions.append(decision)
            if decision.winner is not None and decision.winner_uid is not None:
                winners[comp.name][metric] = decision.winner
                paid[decision.winner_uid].append(decision.winner_share)
            for share in decision.remainder:
                paid[share.uid].append(share.share)
        competition_scores[comp.name] = tuple(math.fsum(p) for p in paid)
    scores = total_scores(competition_scores, n)
    weights, rule = decide_weights(scores, epoch.validator_permits, epoch.fallback, epoch.burn_uid)
    return Judgement(
        competition_scores=competition_scores,
        scores=scores,
        weights=weights,
        fallback_used=rule is not WeightsRule.SCORES,
        winners=winners,
        decisions=tuple(decisions),
        dropped=dropped,
        weights_rule=rule,
    )
