"""The speech band of a dataset file, and zero-phase band limiting to it.

A fixed filter must not be able to "enhance" a benchmark file: if the noise had energy where the
clean speech has none (below the speech's lowest frequencies, or above the top of the speech
source's band), a fixed high-pass or low-pass would remove noise without touching speech and
gain SI-SDR for nothing. So clean speech and noise are both limited to the same band:

* lower edge ``LOW_EDGE_HZ`` (50 Hz): nothing below it (no DC, no sub-audible rumble), a
  raised-cosine ramp from 50 to 60 Hz;
* upper edge: 95% of the Nyquist frequency of the slower of the speech source's rate and the
  competition's rate (espeak-ng renders at 22,050 Hz, so 10,474 Hz; ElevenLabs ``pcm_44100`` at
  48 kHz gives 20,948 Hz), with a ramp over the last 5% below it.

The filter is a mask on the FFT of the zero-padded signal (padded to ``scipy.fft.next_fast_len``),
so it is exact, zero-phase and deterministic.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import fft as sfft

from ._types import Audio

__all__ = ["LOW_EDGE_HZ", "Band", "band_limit", "band_mask", "speech_band"]

LOW_EDGE_HZ = 50.0
_LOW_PASS_HZ = 60.0
_TOP_FRACTION = 0.95
_TOP_RAMP = 0.05


class Band(NamedTuple):
    low_hz: float
    high_hz: float


def speech_band(speech_rate: int, sample_rate: int) -> Band:
    """The band clean speech from a ``speech_rate`` source occupies at ``sample_rate``."""
    if speech_rate <= 0 or sample_rate <= 0:
        raise ValueError("rates must be positive")
    return Band(LOW_EDGE_HZ, _TOP_FRACTION * min(speech_rate, sample_rate) / 2)


def band_mask(freqs: Audio, band: Band) -> Audio:
    """Gain per frequency: 0 below ``band.low_hz`` and above ``band.high_hz``, 1 from 10 Hz
    above the lower edge to 5% below the upper edge, raised-cosine ramps between."""
    f = np.asarray(freqs, dtype=np.float64)
    low = np.clip((f - band.low_hz) / (_LOW_PASS_HZ - LOW_EDGE_HZ), 0.0, 1.0)
    ramp = _TOP_RAMP * band.high_hz
    high = np.clip((band.high_hz - f) / ramp, 0.0, 1.0)
    return np.asarray(0.5 - 0.5 * np.cos(np.pi * low * high), dtype=np.float64)


def band_limit(x: Audio, sample_rate: int, band: Band) -> Audio:
    """``x`` with everything outside ``band`` removed (zero-phase, same length)."""
    n = x.size
    if n == 0:
        return np.asarray(x, dtype=np.float64)
    size = sfft.next_fast_len(2 * n, real=True)  # the padding keeps the circular wrap out
    spectrum = sfft.rfft(np.asarray(x, dtype=np.float64), size)
    spectrum *= band_mask(sfft.rfftfreq(size, 1.0 / sample_rate), band)
    return np.asarray(sfft.irfft(spectrum, size)[:n], dtype=np.float64)
