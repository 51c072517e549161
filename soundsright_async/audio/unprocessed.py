"""The unprocessed input as a contestant: score the degraded inputs as if a model returned them.

A model must beat doing nothing. Every epoch the validator scores the degraded files themselves
against the clean references (no container, in the scoring pool), and judging admits a result
only if it is strictly above that on the competition's gate metric (PESQ at 16 kHz, SI-SDR at
48 kHz; ``validator.judging.GATE_METRICS``). Without the gate a passthrough model holds SI-SAR
at its ceiling: its output lies in the span of speech and noise, so the artefact term is zero
(docs/judging.md §3).

    score = await score_unprocessed(pool, competition, dataset.clean, dataset.degraded)
    EpochInput(..., unprocessed={competition.name: unprocessed_averages(score)})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import ScoringError
from ..competitions import Competition, Metric
from .metrics import DatasetScore

if TYPE_CHECKING:
    from ..sandbox.runner import Scorer

__all__ = ["score_unprocessed", "unprocessed_averages"]


async def score_unprocessed(
    scorer: Scorer, competition: Competition, clean_dir: Path, degraded_dir: Path
) -> DatasetScore:
    """Score ``degraded_dir`` as the enhanced output of ``competition``'s dataset. ``scorer`` is
    the ``sandbox.runner.Scorer`` protocol (``audio.pool.ScoringPool``). An unusable clean or
    degraded file raises ``ScoringError`` (it is our reference data, not a model's output), not
    the pool's ``ExceptionGroup``."""
    try:
        return await scorer.score(competition, clean_dir, degraded_dir, degraded_dir)
    except ExceptionGroup as group:
        scoring = group.subgroup(lambda exc: isinstance(exc, ScoringError))
        if scoring is None:
            raise
        first: BaseException = scoring
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from group


def unprocessed_averages(score: DatasetScore) -> Mapping[Metric, float]:
    """``{metric: average}``: one competition's entry of the judge input's ``unprocessed``."""
    return {metric: result.average for metric, result in score.metrics.items()}
