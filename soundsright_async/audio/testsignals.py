"""Deterministic speech-like test signals and small scoring fixtures.

Used by the test suite and ``benchmarks/``; not a dataset generator (that is ``audio/dataset``).
The signal is a harmonic source with a gliding pitch, shaped by two formant resonances and a
syllable-rate envelope with pauses, which is enough for PESQ's voice-activity detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import signal

from ..competitions import Competition

__all__ = ["ScoringFixture", "speech_like", "write_scoring_fixture"]

Audio = npt.NDArray[np.float64]


def speech_like(seconds: float, sample_rate: int, seed: int) -> Audio:
    """A deterministic speech-like signal with peak 0.5."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 110.0 + 40.0 * rng.random() + 25.0 * np.sin(2 * np.pi * (0.3 + 0.4 * rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    source = np.zeros(n)
    for k in range(1, 30):
        if 200.0 * k > sample_rate / 2:  # keep harmonics below Nyquist even at high pitch
            break
        source += np.sin(k * phase) / k
    source += 0.05 * rng.standard_normal(n)
    out = np.zeros(n)
    for formant, bw in (
        (500.0 + 300.0 * rng.random(), 120.0),
        (1500.0 + 700.0 * rng.random(), 200.0),
    ):
        b, a = signal.iirpeak(formant, formant / bw, fs=sample_rate)
        out += signal.lfilter(b, a, source)
    syllable = 3.0 + 2.0 * rng.random()
    envelope = np.clip(np.sin(2 * np.pi * syllable * t + rng.random() * 6.28), 0.0, None) ** 0.7
    pause_mask = (np.sin(2 * np.pi * 0.25 * t + rng.random()) > -0.7).astype(float)
    out *= envelope * pause_mask
    peak = float(np.max(np.abs(out))) or 1.0
    return 0.5 * out / peak


@dataclass(frozen=True, slots=True)
class ScoringFixture:
    clean: Path
    noisy: Path
    enhanced: Path
    names: tuple[str, ...]


def write_scoring_fixture(
    root: Path,
    competition: Competition,
    *,
    files: int,
    seconds: float,
    seed: int = 0,
    noise_level: float = 0.1,
    enhancement: float = 0.5,
) -> ScoringFixture:
    """Write ``clean/``, ``noisy/`` (clean + white noise) and ``enhanced/`` (noise scaled by
    ``1 - enhancement``) directories of 16-bit mono WAVs named ``0.wav``, ``1.wav``, ..."""
    rate = competition.sample_rate
    dirs = {k: root / k for k in ("clean", "noisy", "enhanced")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(files):
        clean = speech_like(seconds, rate, seed * 100_003 + i)
        noise = noise_level * np.random.default_rng(seed * 7919 + i).standard_normal(clean.size)
        name = f"{i}.wav"
        names.append(name)
        for key, data in (
            ("clean", clean),
            ("noisy", clean + noise),
            ("enhanced", clean + (1.0 - enhancement) * noise),
        ):
            sf.write(dirs[key] / name, np.clip(data, -1.0, 1.0), rate, subtype="PCM_16")
    return ScoringFixture(dirs["clean"], dirs["noisy"], dirs["enhanced"], tuple(names))
