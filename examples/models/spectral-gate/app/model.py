"""Spectral gating denoiser (numpy/scipy): per frequency bin, the noise floor is estimated
from the quietest frames; a smoothed Wiener-style gain suppresses bins near that floor."""

import numpy as np
from scipy import ndimage, signal


def enhance(audio, rate):
    audio = np.asarray(audio, dtype=np.float64)
    nperseg = 512 if rate <= 16000 else 1536
    _, _, spec = signal.stft(audio, fs=rate, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    power = np.abs(spec) ** 2
    # noise PSD: the median over time of each bin (speech is sparse in time-frequency)
    noise = np.percentile(power, 50, axis=1, keepdims=True) + 1e-12
    snr_post = power / noise
    # decision-directed-like smoothing of the a-priori SNR over time and frequency
    snr_prio = np.maximum(snr_post - 1.0, 0.0)
    snr_prio = ndimage.uniform_filter(snr_prio, size=(3, 5))
    gain = snr_prio / (1.0 + snr_prio)
    gain = np.maximum(gain, 0.1)
    _, out = signal.istft(spec * gain, fs=rate, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    out = out[: audio.size]
    if out.size < audio.size:
        out = np.pad(out, (0, audio.size - out.size))
    return np.clip(out, -1.0, 1.0)
