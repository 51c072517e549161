"""Dereverberation by spectral decay subtraction (Lebart et al. 2001): the late reverberation
PSD in a frame is the PSD ``T_late`` earlier, decayed by the room's exponential energy decay
(``exp(-2 * delta * T_late)`` with ``delta = 3 ln 10 / T60``); a Wiener-style gain removes it.
T60 is estimated blind from the signal's energy decay slopes, clamped to 0.2-1.2 s."""

import numpy as np
from scipy import signal


def _t60(power, hop_s):
    """Blind T60 from the steepest sustained energy decays of the frame energy envelope."""
    env = 10 * np.log10(power.sum(axis=0) + 1e-12)
    span = max(2, int(round(0.1 / hop_s)))
    slopes = (env[span:] - env[:-span]) / (span * hop_s)  # dB/s
    falling = slopes[slopes < 0]
    if falling.size < 4:
        return 0.5
    decay = -np.percentile(falling, 10)  # dB per second during free decays
    return float(np.clip(60.0 / max(decay, 1e-3), 0.2, 1.2))


def enhance(audio, rate):
    audio = np.asarray(audio, dtype=np.float64)
    nperseg = 512 if rate <= 16000 else 1536
    hop = nperseg // 4
    _, _, spec = signal.stft(audio, fs=rate, nperseg=nperseg, noverlap=nperseg - hop)
    power = np.abs(spec) ** 2
    hop_s = hop / rate
    t60 = _t60(power, hop_s)
    delta = 3.0 * np.log(10.0) / t60
    late = max(1, int(round(0.05 / hop_s)))  # late reverberation starts ~50 ms after the direct path
    smoothed = signal.lfilter([0.3], [1.0, -0.7], power, axis=1)
    reverb = np.zeros_like(power)
    reverb[:, late:] = np.exp(-2.0 * delta * late * hop_s) * smoothed[:, :-late]
    gain = np.maximum(1.0 - reverb / (power + 1e-12), 0.0)
    gain = np.maximum(np.sqrt(gain), 0.15)
    _, out = signal.istft(spec * gain, fs=rate, nperseg=nperseg, noverlap=nperseg - hop)
    out = out[: audio.size]
    if out.size < audio.size:
        out = np.pad(out, (0, audio.size - out.size))
    return np.clip(out, -1.0, 1.0)
