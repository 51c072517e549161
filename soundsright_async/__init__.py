"""soundsright_async: validator and miner daemons for the SoundsRight speech-enhancement subnet."""

from __future__ import annotations

from ._exceptions import (
    ConfigError,
    InputError,
    PoolClosedError,
    PoolError,
    ScoringError,
    SoundsrightError,
    WorkerCrashedError,
)
from .competitions import COMPETITIONS, Competition, Metric, Task, get_competition

__version__ = "3.0.0.dev0"

__all__ = [
    "COMPETITIONS",
    "Competition",
    "ConfigError",
    "InputError",
    "Metric",
    "PoolClosedError",
    "PoolError",
    "ScoringError",
    "SoundsrightError",
    "Task",
    "WorkerCrashedError",
    "__version__",
    "get_competition",
]
