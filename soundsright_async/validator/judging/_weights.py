"""Scores to weights: normalise to sum 1, validators excluded, a fallback when nobody scored."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ._types import Fallback

__all__ = ["total_scores", "weights_from_scores"]


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


def weights_from_scores(
    scores: Sequence[float],
    validator_permits: Sequence[bool] = (),
    fallback: Fallback = "miners",
) -> tuple[tuple[float, ...], bool]:
    """Return (weights, fallback_used).

    Weights are the scores of uids without a validator permit, normalised to sum 1. When none of
    them has a positive score, the fallback decides: ``"miners"`` spreads the weight equally over
    every uid without a permit, a tuple of uids equally over those, ``"none"`` sets all to zero.
    A uid with a validator permit always gets weight 0. Scores must be finite and >= 0.
    """
    n = len(scores)
    if validator_permits and len(validator_permits) != n:
        raise ValueError(f"validator_permits has {len(validator_permits)} flags for {n} uids")
    bad = [uid for uid, s in enumerate(scores) if not (math.isfinite(s) and s >= 0)]
    if bad:
        raise ValueError(f"scores must be finite and non-negative; uids {bad} are not")
    permits = tuple(validator_permits) or (False,) * n
    mass = [0.0 if permit else s for s, permit in zip(scores, permits, strict=True)]
    total = math.fsum(mass)
    if total > 0:
        return tuple(m / total for m in mass), False
    if fallback == "miners":
        targets = [uid for uid in range(n) if not permits[uid]]
    elif fallback == "none":
        targets = []
    else:
        targets = sorted(set(fallback))
        wrong = [uid for uid in targets if not 0 <= uid < n or permits[uid]]
        if wrong:
            raise ValueError(f"fallback uids {wrong} are unknown or hold a validator permit")
    weights = [0.0] * n
    for uid in targets:
        weights[uid] = 1.0 / len(targets)
    return tuple(weights), True
