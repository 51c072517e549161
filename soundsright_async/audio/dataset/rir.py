"""Synthetic room impulse responses: pyroomacoustics image-source shoebox rooms.

A seeded draw picks a target RT60 in [0.2, 2.0] s, a room size, wall absorption (Sabine inverse)
and source / microphone positions. The RIR is simulated at the competition's rate, cut at its
direct-path peak, and its RT60 is measured (Schroeder T30) at that same, true rate. A draw whose
measured RT60 exceeds 2.0 s, or whose room cannot reach the target, is redrawn from the same RNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pyroomacoustics as pra

from ._types import Audio
from .constants import MAX_RT60_S, MIN_RT60_S
from .mixing import rt60, trim_rir

__all__ = ["SyntheticRir", "SyntheticRirSource", "synthetic_rir"]

_MAX_ORDER = 60  # image-source order cap: keeps a 2 s room to ~0.1 s of CPU
_MAX_DRAWS = 50


def _position(rng: np.random.Generator, dims: Audio, margin: float = 0.5) -> list[float]:
    return [float(rng.uniform(margin, d - margin)) for d in dims]


def synthetic_rir(seed: int, sample_rate: int) -> tuple[Audio, float, str]:
    """(RIR cut at the direct path with peak 1, measured RT60 in s, description)."""
    rng = np.random.default_rng(seed)
    for _ in range(_MAX_DRAWS):
        target = float(rng.uniform(MIN_RT60_S, MAX_RT60_S))
        dims = np.array([rng.uniform(3.0, 12.0), rng.uniform(3.0, 10.0), rng.uniform(2.4, 4.0)])
        source, mic = _position(rng, dims), _position(rng, dims)
        if float(np.linalg.norm(np.subtract(source, mic))) < 0.5:
            continue
        try:
            absorption, order = pra.inverse_sabine(target, dims.tolist())
        except ValueError:
            continue  # this room cannot reach the target RT60
        room = pra.ShoeBox(
            dims.tolist(),
            fs=sample_rate,
            materials=pra.Material(absorption),
            max_order=min(int(order), _MAX_ORDER),
            air_absorption=False,
        )
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        h = trim_rir(np.asarray(room.rir[0][0], dtype=np.float64))
        measured = rt60(h, sample_rate)
        if measured <= MAX_RT60_S:
            desc = "room {:.1f}x{:.1f}x{:.1f} m, target RT60 {:.2f} s".format(*dims, target)
            return h, measured, desc
    raise ValueError(f"no RIR with RT60 <= {MAX_RT60_S} s in {_MAX_DRAWS} draws (seed {seed})")


@dataclass(frozen=True, slots=True)
class SyntheticRir:
    """A planned synthetic RIR; ``render`` runs in a pool worker."""

    seed: int

    def render(self, sample_rate: int) -> tuple[Audio, float, str]:
        h, measured, desc = synthetic_rir(self.seed, sample_rate)
        return h, measured, f"synthetic:{self.seed} ({desc})"


class SyntheticRirSource:
    """The default ``RirSource``: nothing to download."""

    @property
    def name(self) -> str:
        return "synthetic"

    async def prepare(self) -> None:
        return None

    def plan(self, rng: random.Random) -> SyntheticRir:
        return SyntheticRir(rng.getrandbits(63))
