"""The miner daemon: keeps the model committed and the endpoint published, answers validators'
signed ``/v3/model`` and ``/v3/feedback`` requests and stores their Feedback (docs/miner.md)."""

from __future__ import annotations

from ..runtime import SdNotifier
from ._daemon import Miner
from ._state import MinerState
from .feedback import FeedbackRecord, FeedbackStore, read_records, summarize

__all__ = [
    "FeedbackRecord",
    "FeedbackStore",
    "Miner",
    "MinerState",
    "SdNotifier",
    "read_records",
    "summarize",
]
