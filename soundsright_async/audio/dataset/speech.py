"""The ``SpeechSource`` seam: something that turns a prompt into clean mono speech."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ._types import Audio

__all__ = ["SpeechClip", "SpeechRequest", "SpeechSource"]


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """One clip to synthesise; ``speed`` scales the normal speaking rate (1.0 = normal)."""

    index: int
    text: str
    voice: str
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class SpeechClip:
    """Float mono samples in [-1, 1] at the source's own rate."""

    samples: Audio
    sample_rate: int


class SpeechSource(Protocol):
    """A TTS backend. ``voices`` lists what the seed draws from (stable order);
    ``speed_range`` is the range speeds are drawn from (``(1.0, 1.0)``: no speed control)."""

    @property
    def name(self) -> str: ...

    @property
    def speed_range(self) -> tuple[float, float]: ...

    async def voices(self) -> Sequence[str]: ...

    async def synthesize(self, request: SpeechRequest) -> SpeechClip: ...
