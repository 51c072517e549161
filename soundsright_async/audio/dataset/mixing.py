"""Pure mixing functions: resampling, loudness, fades, noise at an SNR, reverberation, RT60.

Rules (issue 3, after the reference in data_miner.md §1.6-1.7, with its bugs fixed):

* The SNR is a loudness difference (ITU-R BS.1770 via pyloudnorm), not a power ratio. If the mix
  peaks at or above 1 the SNR rises by 1 dB until it does not.
* 10 ms linear fades are applied to the clean reference and the degraded file alike.
* Reverberation: FFT convolution, truncated to the clean length, loudness-matched to the clean
  file, then scaled down if its peak is at or above 1.
* RT60 (Schroeder backward integration, T30) is measured at the RIR's true rate.
"""

from __future__ import annotations

import io
import math
from typing import NamedTuple

import numpy as np
import pyloudnorm
import soundfile as sf
import soxr
from scipy import signal

from ._types import Audio
from .constants import (
    CLEAN_LOUDNESS_LUFS,
    CLEAN_MAX_PEAK,
    FADE_MS,
    PEAK_LIMIT,
    SNR_STEP_DB,
)

__all__ = [
    "NoisyMix",
    "apply_fades",
    "fit_length",
    "loudness",
    "mix_at_snr",
    "normalize_clean",
    "resample",
    "reverberate",
    "rt60",
    "to_wav_bytes",
    "trim_rir",
]

_SAFE_PEAK = 0.99
_MAX_SNR_RISE_DB = 300.0


def resample(x: Audio, rate_in: int, rate_out: int) -> Audio:
    """High-quality soxr resampling (identity when the rates match)."""
    if rate_in == rate_out:
        return np.asarray(x, dtype=np.float64)
    return np.asarray(soxr.resample(x, rate_in, rate_out, quality="HQ"), dtype=np.float64)


def loudness(x: Audio, sample_rate: int) -> float:
    """Integrated loudness in LUFS; ``-inf`` for silence. Needs at least 0.4 s of audio."""
    if x.size < int(0.4 * sample_rate):
        raise ValueError(f"need at least 0.4 s of audio for loudness, got {x.size} samples")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))


def normalize_clean(x: Audio, sample_rate: int) -> Audio:
    """Scale clean speech to ``CLEAN_LOUDNESS_LUFS`` with its peak at most ``CLEAN_MAX_PEAK``."""
    level = loudness(x, sample_rate)
    if not math.isfinite(level):
        raise ValueError("clean speech is silent")
    y = x * 10 ** ((CLEAN_LOUDNESS_LUFS - level) / 20)
    peak = float(np.max(np.abs(y)))
    return y * (CLEAN_MAX_PEAK / peak) if peak > CLEAN_MAX_PEAK else y


def apply_fades(x: Audio, sample_rate: int, fade_ms: float = FADE_MS) -> Audio:
    """Linear 0->1 fade-in and 1->0 fade-out of ``int(fade_ms/1000*rate)`` samples each."""
    n = int(fade_ms / 1000 * sample_rate)
    y = np.array(x, dtype=np.float64, copy=True)
    if n <= 0 or 2 * n > y.size:
        return y
    ramp = np.linspace(0.0, 1.0, n)
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def fit_length(noise: Audio, length: int, offset: int = 0) -> Audio:
    """``length`` samples of ``noise`` from ``offset``, tiling (hard seams) when it is short."""
    if noise.size == 0:
        raise ValueError("empty noise")
    if noise.size >= length + offset:
        return noise[offset : offset + length]
    reps = math.ceil((length + offset) / noise.size)
    return np.tile(noise, reps)[offset : offset + length]


class NoisyMix(NamedTuple):
    clean: Audio
    degraded: Audio
    snr_db: float


def mix_at_snr(clean: Audio, noise: Audio, snr_db: float, sample_rate: int) -> NoisyMix:
    """Clean + noise at a loudness SNR; the SNR rises 1 dB at a time until the peak is < 1.

    Both outputs carry the fades. Raises ``ValueError`` for silent noise or a clean signal that
    peaks at 1 or above (no SNR can make that mix peak below 1).
    """
    if noise.size != clean.size:
        raise ValueError("clean and noise must have the same length")
    if float(np.max(np.abs(clean))) >= PEAK_LIMIT:
        raise ValueError("clean speech peaks at or above 1; normalise it first")
    l_clean, l_noise = loudness(clean, sample_rate), loudness(noise, sample_rate)
    if not (math.isfinite(l_clean) and math.isfinite(l_noise)):
        raise ValueError("clean speech or noise is silent")
    clean_f = apply_fades(clean, sample_rate)
    noise_f = apply_fades(noise, sample_rate)
    snr = snr_db
    while True:
        gain = 10 ** (((l_clean - snr) - l_noise) / 20)
        mix = clean_f + gain * noise_f
        if float(np.max(np.abs(mix))) < PEAK_LIMIT:
            break
        snr += SNR_STEP_DB
        if snr > snr_db + _MAX_SNR_RISE_DB:  # pragma: no cover - unreachable for peak < 1
            raise ValueError(f"no SNR up to {snr:.1f} dB keeps the mix below peak 1")
    return NoisyMix(clean_f, mix, snr)


def trim_rir(rir: Audio, start: int | None = None) -> Audio:
    """Cut the RIR at ``start`` (default: its largest sample, taken as the direct path) so the
    pre-delay goes, and scale its peak to 1."""
    h = np.asarray(rir, dtype=np.float64)
    if start is None:
        start = int(np.argmax(np.abs(h)))
    h = h[start:]
    peak = float(np.max(np.abs(h))) if h.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        raise ValueError("RIR is silent or not finite")
    return h / peak


def rt60(rir: Audio, sample_rate: int) -> float:
    """Reverberation time (s) by Schroeder integration, T30 (-5 to -35 dB) extrapolated to 60 dB.

    Falls back to T20 / T10 when the decay does not reach -35 dB; ``inf`` if not even -15 dB.
    """
    h = np.asarray(rir, dtype=np.float64)
    energy = np.cumsum((h**2)[::-1])[::-1]
    if energy.size == 0 or energy[0] <= 0:
        return math.inf
    edc = 10 * np.log10(energy / energy[0] + 1e-300)
    for end_db, factor in ((-35.0, 2.0), (-25.0, 3.0), (-15.0, 6.0)):
        below = np.nonzero(edc <= end_db)[0]
        if below.size == 0:
            continue
        i_start = int(np.argmax(edc <= -5.0))
        i_end = int(below[0])
        if i_end - i_start < 2:
            continue
        t = np.arange(i_start, i_end + 1) / sample_rate
        slope, intercept = np.polyfit(t, edc[i_start : i_end + 1], 1)
        if slope >= 0:
            return math.inf
        t_init = (-5.0 - intercept) / slope
        t_end = (end_db - intercept) / slope
        return float(factor * (t_end - t_init))
    return math.inf


def reverberate(clean: Audio, rir: Audio, sample_rate: int) -> tuple[Audio, Audio]:
    """(faded clean, faded reverberant): FFT convolution truncated to the clean length,
    loudness-matched to the clean signal, scaled down if its peak reaches 1."""
    wet = signal.fftconvolve(clean, rir)[: clean.size]
    l_clean, l_wet = loudness(clean, sample_rate), loudness(wet, sample_rate)
    if not (math.isfinite(l_clean) and math.isfinite(l_wet)):
        raise ValueError("clean or reverberant signal is silent")
    wet = wet * 10 ** ((l_clean - l_wet) / 20)
    peak = float(np.max(np.abs(wet)))
    if peak >= PEAK_LIMIT:
        wet = wet * (_SAFE_PEAK / peak)
    return apply_fades(clean, sample_rate), apply_fades(wet, sample_rate)


def to_wav_bytes(x: Audio, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV bytes (samples are clipped to [-1, 1) first)."""
    if not np.all(np.isfinite(x)):
        raise ValueError("audio is not finite")
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 32767 / 32768), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
