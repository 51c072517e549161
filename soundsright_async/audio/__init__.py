"""Audio work with no daemon state: metrics, the process pool, dataset generation."""

from __future__ import annotations

from .metrics import DatasetScore, FileScore, MetricResult, score_dataset, score_file
from .pool import ScoringPool

__all__ = [
    "DatasetScore",
    "FileScore",
    "MetricResult",
    "ScoringPool",
    "score_dataset",
    "score_file",
]
