"""Dereverberation in two stages, numpy/scipy only, one channel.

1. Weighted prediction error (WPE; Nakatani et al. 2010; Yoshioka & Nakatani 2012): in each
   STFT frequency bin, the late reverberation is predicted linearly from the frames at least
   ``delay`` hops earlier (``taps`` of them) and subtracted; the prediction filter minimises the
   error weighted by the inverse of the (iteratively re-estimated) speech power.
2. Spectral decay subtraction (Lebart et al. 2001) on what is left: the residual late-reverb PSD
   in a frame is the smoothed PSD ``T_late`` earlier, decayed by the room's energy decay
   ``exp(-2 delta T_late)`` (``delta = 3 ln 10 / T60``, T60 estimated blind from the decay slopes
   of the frame energy); a Wiener-style gain with a floor removes it.
"""

import numpy as np
from scipy import signal

_CHUNK = 64  # frequency bins solved at once (bounds memory at 48 kHz)


def _t60(power, hop_s):
    """Blind T60 from the steepest sustained energy decays of the frame energy envelope."""
    env = 10 * np.log10(power.sum(axis=0) + 1e-12)
    span = max(2, int(round(0.1 / hop_s)))
    slopes = (env[span:] - env[:-span]) / (span * hop_s)  # dB/s
    falling = slopes[slopes < 0]
    if falling.size < 4:
        return 0.5
    decay = -np.percentile(falling, 10)  # dB per second during free decays
    return float(np.clip(60.0 / max(decay, 1e-3), 0.2, 2.0))


def wpe(spec, taps, delay, iterations):
    """Single-channel WPE of an STFT ``spec`` (bins x frames)."""
    bins, frames = spec.shape
    out = spec.copy()
    for start in range(0, bins, _CHUNK):
        x = spec[start : start + _CHUNK]
        # past[f, k, t] = x[f, t - delay - k] (zero before the start)
        past = np.zeros((x.shape[0], taps, frames), dtype=spec.dtype)
        for k in range(taps):
            s = delay + k
            if s < frames:
                past[:, k, s:] = x[:, : frames - s]
        y = x
        for _ in range(iterations):
            weight = 1.0 / np.maximum(np.abs(y) ** 2, 1e-10)
            wp = past * weight[:, None, :]
            corr = np.einsum("fkt,flt->fkl", wp, past.conj())
            cross = np.einsum("fkt,ft->fk", wp, x.conj())
            load = 1e-6 * np.trace(corr, axis1=1, axis2=2).real[:, None, None] / taps + 1e-12
            filt = np.linalg.solve(corr + load * np.eye(taps), cross[..., None])[..., 0]
            y = x - np.einsum("fk,fkt->ft", filt.conj(), past)
        out[start : start + _CHUNK] = y
    return out


def enhance(audio, rate, taps=16, delay=2, iterations=2, floor=0.15):
    audio = np.asarray(audio, dtype=np.float64)
    nperseg = 512 if rate <= 16000 else 1536
    hop = nperseg // 4
    hop_s = hop / rate
    _, _, spec = signal.stft(audio, fs=rate, nperseg=nperseg, noverlap=nperseg - hop)
    spec = wpe(spec, taps, delay, iterations)
    power = np.abs(spec) ** 2
    delta = 3.0 * np.log(10.0) / _t60(power, hop_s)
    late = max(1, int(round(0.05 / hop_s)))  # late reverberation: ~50 ms after the direct path
    smoothed = signal.lfilter([0.3], [1.0, -0.7], power, axis=1)
    reverb = np.zeros_like(power)
    reverb[:, late:] = np.exp(-2.0 * delta * late * hop_s) * smoothed[:, :-late]
    gain = np.maximum(1.0 - reverb / (power + 1e-12), 0.0)
    gain = np.maximum(np.sqrt(gain), floor)
    _, out = signal.istft(spec * gain, fs=rate, nperseg=nperseg, noverlap=nperseg - hop)
    out = out[: audio.size]
    if out.size < audio.size:
        out = np.pad(out, (0, audio.size - out.size))
    return np.clip(out, -1.0, 1.0)
