"""A small synthetic benchmark set for ``model verify`` and the sandbox tests: speech-like
signals (``audio.testsignals``) degraded by noise (denoising) or a synthetic room impulse
response (dereverberation). Deterministic for a seed; no speech engine, no download.
The full generator (espeak-ng / ElevenLabs, real corpora) is ``audio.dataset``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import signal

from ..audio.testsignals import speech_like
from ..competitions import Competition, Task
from .runner import DatasetDirs

__all__ = ["synthetic_rir", "write_synthetic_dataset"]


def synthetic_rir(rate: int, t60: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Direct path plus exponentially decaying noise tail (energy decays 60 dB in ``t60``)."""
    n = int(rate * t60 * 1.2)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-3.0 * np.log(10.0) * t / t60)
    tail[: int(0.003 * rate)] = 0.0
    rir: npt.NDArray[np.float64] = 0.6 * tail / np.sqrt(np.sum(tail**2))
    rir[0] = 1.0
    return rir


def write_synthetic_dataset(
    root: Path, competition: Competition, *, count: int, seed: int, seconds: float = 3.0
) -> DatasetDirs:
    """Write ``clean/`` and ``degraded/`` directories of ``count`` mono 16-bit WAVs."""
    rate = competition.sample_rate
    clean_dir, degraded_dir = root / "clean", root / "degraded"
    clean_dir.mkdir(parents=True, exist_ok=True)
    degraded_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        clean = speech_like(seconds, rate, seed * 1000 + i)
        if competition.task is Task.DENOISING:
            noise = signal.lfilter([1.0], [1.0, -0.6], rng.standard_normal(clean.size))
            snr_db = 5.0 + 5.0 * rng.random()
            scale = np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
            degraded = clean + scale * noise
        else:
            rir = synthetic_rir(rate, 0.4 + 0.4 * rng.random(), rng)
            degraded = signal.fftconvolve(clean, rir)[: clean.size]
        peak = max(float(np.max(np.abs(degraded))), 1e-9)
        gain = min(1.0, 0.9 / peak)
        name = f"{i}.wav"
        sf.write(clean_dir / name, clean * gain, rate, subtype="PCM_16")
        sf.write(degraded_dir / name, degraded * gain, rate, subtype="PCM_16")
    return DatasetDirs(clean=clean_dir, degraded=degraded_dir)
