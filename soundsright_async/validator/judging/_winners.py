"""One (competition, metric): candidates, the winner, the improvement threshold, the remainder.

* Candidates: deduplicated results of registered hotkeys without a validator permit, whose
  gate-metric average is strictly above the unprocessed input's (when given), with a finite
  average, a known block, and an average that is not exactly the baseline model's.
* C = best candidate (highest average, then lower block, then lower uid); P = last epoch's
  winner; H = P's hotkey's candidate this epoch.
* No C: P's hotkey keeps the winner share if still registered, without a permit and not gated
  out this epoch (no remainder). C and no H, or C is H: C wins. Otherwise C wins iff it clears
  the improvement threshold over H, else H wins.
* The remainder pool goes to the other candidates in proportion to (avg − s) / (w − s), with w the
  winner's average and s = min(0, w, every candidate's average).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ...competitions import Competition, Metric
from ._types import (
    GATE_METRICS,
    Decision,
    Entrant,
    Exclusion,
    ExclusionReason,
    ModelResult,
    RemainderShare,
    Rule,
    WinnerRecord,
)

__all__ = [
    "DECAY_BLOCKS",
    "THRESHOLD_END",
    "THRESHOLD_START",
    "improvement_factor",
    "judge_metric",
    "remainder_shares",
    "surpasses",
]

THRESHOLD_START = 0.0035
"""Relative improvement a challenger committed at the incumbent's block needs (0.35%)."""
THRESHOLD_END = 0.0015
"""Relative improvement a challenger committed ``DECAY_BLOCKS`` later needs (0.15%)."""
DECAY_BLOCKS = 50400
"""Blocks over which the threshold decays linearly (about 7 days)."""


def improvement_factor(new_block: int, old_block: int) -> float:
    """The relative improvement the challenger needs: 0.0035 decaying to 0.0015."""
    elapsed = min(max(new_block - old_block, 0) / DECAY_BLOCKS, 1.0)
    return THRESHOLD_START - elapsed * (THRESHOLD_START - THRESHOLD_END)


def surpasses(new: float, new_block: int, old: float, old_block: int) -> bool:
    """True iff ``new > old`` and ``new >= old + |old| · factor`` (higher is better)."""
    return new > old and new >= old + abs(old) * improvement_factor(new_block, old_block)


def remainder_shares(
    pool: float, winner_average: float, others: Sequence[Entrant]
) -> tuple[tuple[RemainderShare, ...], float]:
    """Split ``pool`` among ``others`` (the candidates except the winner); return the shares (in
    uid order) and the unpaid part of the pool.

    share_i = pool · (avg_i − s) / Σ_j (avg_j − s), s = min(0, w, all averages). That is the
    proportional split by ratio_i = (avg_i − s) / (w − s), written so that it also holds when
    w = s (the winner is the lowest candidate): then the candidates above the winner share by
    their distance from it, and if all of them tie the winner they share equally. When every
    other candidate sits at s below the winner (ratio 0), or there is nobody, the pool is
    unpaid. No share is negative and the shares never exceed the pool.
    """
    ordered = sorted(others, key=lambda e: e.uid)
    if not ordered:
        return (), pool
    s = min(0.0, winner_average, *(e.average for e in ordered))
    spans = [e.average - s for e in ordered]
    total = math.fsum(spans)
    span_w = winner_average - s
    if total > 0:
        fractions = [d / total for d in spans]
    elif span_w == 0:  # every other candidate ties a winner that is the lowest: share equally
        fractions = [1.0 / len(ordered)] * len(ordered)
    else:  # every other candidate sits at s, below the winner: ratio 0 for all
        return tuple(_share(e, 0.0, 0.0) for e in ordered), pool
    shares = tuple(
        _share(e, d / span_w if span_w > 0 else None, min(pool * f, pool))
        for e, d, f in zip(ordered, spans, fractions, strict=True)
    )
    return shares, 0.0


def _share(e: Entrant, ratio: float | None, share: float) -> RemainderShare:
    return RemainderShare(e.hotkey, e.uid, e.average, ratio, share)


def judge_metric(
    competition: Competition,
    metric: Metric,
    results: Sequence[ModelResult],
    uids: Mapping[str, int],
    baseline: float | None,
    previous: WinnerRecord | None,
    *,
    gate: float | None = None,
    validator_permits: Sequence[bool] = (),
) -> Decision:
    """Decide one (competition, metric). ``results`` are already deduplicated and registered.

    ``gate`` is the unprocessed input's average on the competition's gate metric: a result not
    strictly above it is excluded (``no_improvement``). Uids flagged in ``validator_permits``
    are excluded (``validator_permit``) and cannot keep a previous title.
    """
    permits = tuple(validator_permits)
    gate_metric = GATE_METRICS[competition.name]
    candidates, excluded = _candidates(metric, results, uids, baseline, gate_metric, gate, permits)
    budget = competition.budget(metric)
    best = max(candidates, key=lambda e: (e.average, -e.block, -e.uid), default=None)
    incumbent = None
    if previous is not None:
        incumbent = next((e for e in candidates if e.hotkey == previous.hotkey), None)
    threshold = target = None

    if best is None:
        rule, winner, winner_uid = Rule.NO_CANDIDATE, None, None
        if previous is not None and previous.hotkey in uids:
            uid = uids[previous.hotkey]
            disqualified = (ExclusionReason.NO_IMPROVEMENT, ExclusionReason.VALIDATOR_PERMIT)
            if (permits and permits[uid]) or any(
                x.uid == uid and x.reason in disqualified for x in excluded
            ):
                rule = Rule.PREVIOUS_EXCLUDED
            else:
                rule, winner, winner_uid = Rule.PREVIOUS_KEPT, previous, uid
        return Decision(
            competition=competition.name,
            metric=metric,
            rule=rule,
            best=None,
            incumbent=None,
            previous=previous,
            threshold=None,
            target=None,
            winner=winner,
            winner_uid=winner_uid,
            winner_share=budget.winner_share if winner is not None else 0.0,
            remainder=(),
            remainder_unpaid=budget.remainder_pool,
            excluded=excluded,
        )

    if incumbent is None:
        rule, champion = Rule.NO_INCUMBENT, best
    elif incumbent.hotkey == best.hotkey:
        rule, champion = Rule.INCUMBENT_IS_BEST, best
    else:
        threshold = improvement_factor(best.block, incumbent.block)
        target = incumbent.average + abs(incumbent.average) * threshold
        if best.average > incumbent.average and best.average >= target:
            rule, champion = Rule.CHALLENGER_SURPASSED, best
        else:
            rule, champion = Rule.INCUMBENT_DEFENDED, incumbent
    others = [e for e in candidates if e.hotkey != champion.hotkey]
    shares, unpaid = remainder_shares(budget.remainder_pool, champion.average, others)
    return Decision(
        competition=competition.name,
        metric=metric,
        rule=rule,
        best=best,
        incumbent=incumbent,
        previous=previous,
        threshold=threshold,
        target=target,
        winner=WinnerRecord(champion.hotkey, champion.block, champion.average),
        winner_uid=champion.uid,
        winner_share=budget.winner_share,
        remainder=shares,
        remainder_unpaid=unpaid,
        excluded=excluded,
    )


def _candidates(
    metric: Metric,
    results: Sequence[ModelResult],
    uids: Mapping[str, int],
    baseline: float | None,
    gate_metric: Metric,
    gate: float | None,
    permits: tuple[bool, ...],
) -> tuple[list[Entrant], tuple[Exclusion, ...]]:
    candidates: list[Entrant] = []
    excluded: list[Exclusion] = []
    for r in results:
        uid = uids[r.hotkey]
        average = r.average(metric)
        gate_average = r.average(gate_metric)
        if permits and permits[uid]:
            excluded.append(Exclusion(r.hotkey, uid, ExclusionReason.VALIDATOR_PERMIT))
        elif gate is not None and (gate_average is None or not gate_average > gate):
            excluded.append(Exclusion(r.hotkey, uid, ExclusionReason.NO_IMPROVEMENT))
        elif average is None:
            excluded.append(Exclusion(r.hotkey, uid, ExclusionReason.NO_AVERAGE))
        elif r.block is None:
            excluded.append(Exclusion(r.hotkey, uid, ExclusionReason.NO_BLOCK))
        elif baseline is not None and average == baseline:
            excluded.append(Exclusion(r.hotkey, uid, ExclusionReason.EQUALS_BASELINE))
        else:
            candidates.append(Entrant(r.hotkey, uid, r.block, average))
    candidates.sort(key=lambda e: e.uid)
    excluded.sort(key=lambda x: x.uid)
    return candidates, tuple(excluded)
