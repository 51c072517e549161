"""The services every validator task is given (built once by ``_daemon``; tasks own none)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ..chain import Chain
from ..config import Secrets
from ..net import SignedClient
from ..wallet import Hotkey
from ._state import ValidatorState
from ._store import Store
from .settings import ValidatorSettings

if TYPE_CHECKING:
    from ..audio.pool import ScoringPool
    from ..sandbox import ModelCache
    from ..sandbox.runner import BenchmarkRunner

__all__ = ["Services"]


@dataclass
class Services:
    settings: ValidatorSettings
    secrets: Secrets
    hotkey: Hotkey
    chain: Chain
    store: Store
    state: ValidatorState
    client: SignedClient
    pool: ScoringPool
    runner: BenchmarkRunner
    models: ModelCache
    judge_requests: anyio.abc.ObjectSendStream[int]
    """The epoch clock asks the judging task to judge an epoch through this stream."""

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def datasets_dir(self, epoch: int) -> Path:
        return self.settings.data_dir / "datasets" / f"epoch-{epoch}"
