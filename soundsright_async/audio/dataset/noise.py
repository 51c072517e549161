"""Synthetic noise: a seeded mixture of coloured noise, babble, mains hum and transient clatter.

Everything is drawn from ``numpy.random.default_rng(seed)``, so ``synthetic_noise(seed, n, rate)``
is a pure function of its arguments. Babble is made of espeak-ng talkers (other prompts and
voices than the clean speech) and costs a few milliseconds per talker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import signal

from ._types import Audio
from .espeak import ESPEAK_VOICES, espeak_synthesize
from .mixing import fit_length, loudness, resample
from .sentences import Prompter

__all__ = [
    "COLOURS",
    "SHELF_HZ",
    "SyntheticNoise",
    "SyntheticNoiseSource",
    "coloured_noise",
    "synthetic_noise",
]

COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}
SHELF_HZ = 200.0
"""Coloured noise follows its 1/f**a slope above this frequency and is flat below it."""


def _unit_rms(x: Audio) -> Audio:
    return np.asarray(x / (np.sqrt(np.mean(x**2)) + 1e-12), dtype=np.float64)


def coloured_noise(rng: np.random.Generator, n: int, exponent: float, corner: float = 0.0) -> Audio:
    """Gaussian noise with a 1/f**exponent power spectrum above ``corner`` (a frequency in
    cycles per sample), flat below it, and no DC; unit RMS.

    The shelf keeps brown and pink noise from putting most of their energy at the lowest
    frequencies, where a fixed high-pass would remove it without touching speech. Shaped on an
    FFT of ``scipy.fft.next_fast_len(n)`` points (prime-heavy lengths are slow), cut to ``n``.
    """
    size = sfft.next_fast_len(max(n, 2), real=True)
    spectrum = sfft.rfft(rng.standard_normal(size))
    freqs = np.maximum(sfft.rfftfreq(size), max(corner, 1.0 / size))
    spectrum *= freqs ** (-exponent / 2)
    spectrum[0] = 0.0
    x = sfft.irfft(spectrum, size)[:n]
    return _unit_rms(x - np.mean(x))


def _babble(rng: np.random.Generator, n: int, sample_rate: int) -> Audio:
    talkers = int(rng.integers(3, 7))
    text_rng = random.Random(int(rng.integers(2**32)))
    out = np.zeros(n)
    for _ in range(talkers):
        text = Prompter(text_rng, sentences=2).prompt()
        voice = ESPEAK_VOICES[int(rng.integers(len(ESPEAK_VOICES)))]
        speech, rate = espeak_synthesize(text, voice, float(rng.uniform(0.85, 1.2)))
        speech = resample(speech, rate, sample_rate)
        speech /= np.sqrt(np.mean(speech**2)) + 1e-12
        out += fit_length(speech, n, int(rng.integers(speech.size)))
    return _unit_rms(out)


def _hum(rng: np.random.Generator, n: int, sample_rate: int) -> tuple[Audio, str]:
    mains = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / sample_rate
    x = np.zeros(n)
    for k in range(1, 8):
        x += (
            rng.uniform(0.1, 1.0)
            / k
            * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
        )
    return _unit_rms(x), f"hum{int(mains)}"


def _clatter(rng: np.random.Generator, n: int, sample_rate: int) -> Audio:
    """Sparse short decaying bursts of band-passed noise (dishes, keys, footsteps)."""
    x = np.zeros(n)
    events = max(1, int(rng.poisson(1.5 * n / sample_rate)))
    for _ in range(events):
        length = int(rng.uniform(0.02, 0.15) * sample_rate)
        start = int(rng.integers(max(1, n - length)))
        lo = rng.uniform(300, 3000)
        hi = min(lo * rng.uniform(1.5, 4.0), 0.45 * sample_rate)
        sos = signal.butter(2, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")
        burst = signal.sosfilt(sos, rng.standard_normal(length))
        burst *= np.exp(-np.arange(length) / (length / 5)) * rng.uniform(0.3, 1.0)
        seg = x[start : start + length]
        seg += burst[: seg.size]
    return _unit_rms(x)


def synthetic_noise(seed: int, n: int, sample_rate: int) -> tuple[Audio, str]:
    """``n`` samples of seeded noise at ``sample_rate`` and a description of its components."""
    rng = np.random.default_rng(seed)
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    parts = [colour]
    noise = coloured_noise(rng, n, COLOURS[colour], SHELF_HZ / sample_rate)
    if rng.random() < 0.5:
        level = 10 ** (rng.uniform(-3, 6) / 20)
        noise = noise + level * _babble(rng, n, sample_rate)
        parts.append("babble")
    if rng.random() < 0.3:
        hum, name = _hum(rng, n, sample_rate)
        noise = noise + 10 ** (rng.uniform(-12, 0) / 20) * hum
        parts.append(name)
    if rng.random() < 0.3:
        noise = noise + 10 ** (rng.uniform(-10, 0) / 20) * _clatter(rng, n, sample_rate)
        parts.append("clatter")
    if n >= int(0.4 * sample_rate) and not np.isfinite(loudness(noise, sample_rate)):
        raise ValueError("synthetic noise came out silent")  # pragma: no cover - defensive
    return noise / (np.max(np.abs(noise)) + 1e-12), "+".join(parts)


@dataclass(frozen=True, slots=True)
class SyntheticNoise:
    """A planned synthetic noise; ``render`` runs in a pool worker."""

    seed: int

    def render(self, n: int, sample_rate: int) -> tuple[Audio, str]:
        noise, desc = synthetic_noise(self.seed, n, sample_rate)
        return noise, f"synthetic:{self.seed}:{desc}"


class SyntheticNoiseSource:
    """The default ``NoiseSource``: nothing to download."""

    @property
    def name(self) -> str:
        return "synthetic"

    async def prepare(self) -> None:
        return None

    def plan(self, rng: random.Random) -> SyntheticNoise:
        return SyntheticNoise(rng.getrandbits(63))
