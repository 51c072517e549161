"""The noise and RIR source seams. A source turns seeded draws into a small picklable *plan*
whose ``render`` runs in a pool worker, so a plan depends only on the seed, never on timing."""

from __future__ import annotations

import random
from typing import Protocol

from ._types import Audio

__all__ = ["NoisePlan", "NoiseSource", "RirPlan", "RirSource"]


class NoisePlan(Protocol):
    def render(self, n: int, sample_rate: int) -> tuple[Audio, str]:
        """``n`` samples of noise at ``sample_rate`` and a description for the manifest."""
        ...


class RirPlan(Protocol):
    def render(self, sample_rate: int) -> tuple[Audio, float, str]:
        """(RIR at ``sample_rate`` starting at its direct-path peak, RT60 in s measured at the
        RIR's true rate, id for the manifest)."""
        ...


class NoiseSource(Protocol):
    @property
    def name(self) -> str: ...

    async def prepare(self) -> None:
        """Make the source usable (download / index a corpus); idempotent."""
        ...

    def plan(self, rng: random.Random) -> NoisePlan: ...


class RirSource(Protocol):
    @property
    def name(self) -> str: ...

    async def prepare(self) -> None: ...

    def plan(self, rng: random.Random) -> RirPlan: ...
