"""Scores to weights: normalise to sum 1, validators excluded, a fallback when nobody scored,
and never an all-zero vector: when no uid can be paid the answer is "set no weights" (or all
to the burn uid)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ._types import Fallback, WeightsRule

__all__ = ["decide_weights", "total_scores", "weights_from_scores"]


def total_scores(
    competition_scores: Mapping[str, Sequence[float]], n_uids: int
) -> tuple[float, ...]:
    """Per-uid sum over competitions (exactly rounded, independent of the competitions' order)."""
    for name, vector in competition_scores.items():
        if len(vector) != n_uids:
            raise ValueError(f"competition_scores[{name!r}] has {len(vector)} uids, not {n_uids}")
    return tuple(
        math.fsum(vector[uid] for vector in competition_scores.values()) for uid in range(n_uids)
    )


def decide_weights(
    scores: Sequence[float],
    validator_permits: Sequence[bool] = (),
    fallback: Fallback = "miners",
    burn_uid: int | None = None,
) -> tuple[tuple[float, ...], WeightsRule]:
    """Return (weights, where they came from).

    Weights are the scores of uids without a validator permit, normalised to sum 1 (``scores``).
    When none of them has a positive score, the fallback decides (``fallback``): ``"miners"``
    spreads the weight equally over every uid without a permit, a tuple of uids equally over
    those, ``"none"`` over nobody. When that leaves nobody to pay (every uid holds a permit, no
    uids, or ``"none"``), all weight goes to ``burn_uid`` (``burn_uid``, which may be any
    registered uid) or, without one, the weights are empty (``no_payable_uid``): the caller
    sets no weights. A uid with a validator permit never gets weight unless it is the burn uid.
    Scores must be finite and >= 0.
    """
    n = len(scores)
    if validator_permits and len(validator_permits) != n:
        raise ValueError(f"validator_permits has {len(validator_permits)} flags for {n} uids")
    bad = [uid for uid, s in enumerate(scores) if not (math.isfinite(s) and s >= 0)]
    if bad:
        raise ValueError(f"scores must be finite and non-negative; uids {bad} are not")
    if burn_uid is not None and not 0 <= burn_uid < n:
        raise ValueError(f"burn_uid {burn_uid} is not one of the {n} uids")
    permits = tuple(validator_permits) or (False,) * n
    mass = [0.0 if permit else s for s, permit in zip(scores, permits, strict=True)]
    total = math.fsum(mass)
    if total > 0:
        return tuple(m / total for m in mass), WeightsRule.SCORES
    if fallback == "miners":
        targets = [uid for uid in range(n) if not permits[uid]]
    elif fallback == "none":
        targets = []
    else:
        targets = sorted(set(fallback))
        wrong = [uid for uid in targets if not 0 <= uid < n or permits[uid]]
        if wrong:
            raise ValueError(f"fallback uids {wrong} are unknown or hold a validator permit")
    rule = WeightsRule.FALLBACK
    if not targets:
        if burn_uid is None:
            return (), WeightsRule.NO_PAYABLE_UID
        targets, rule = [burn_uid], WeightsRule.BURN_UID
    weights = [0.0] * n
    for uid in targets:
        weights[uid] = 1.0 / len(targets)
    return tuple(weights), rule


def weights_from_scores(
    scores: Sequence[float],
    validator_permits: Sequence[bool] = (),
    fallback: Fallback = "miners",
    burn_uid: int | None = None,
) -> tuple[tuple[float, ...], bool]:
    """``decide_weights`` as (weights, fallback_used); ``weights`` is empty when no uid can be
    paid and there is no burn uid."""
    weights, rule = decide_weights(scores, validator_permits, fallback, burn_uid)
    return weights, rule is not WeightsRule.SCORES
