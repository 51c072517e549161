"""Pure mixing functions: loudness SNR, the 1 dB rise, fades, RT60, reverberation."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from soundsright_async.audio.dataset.mixing import (
    apply_fades,
    fit_length,
    mix_at_snr,
    normalize_clean,
    resample,
    reverberate,
    rt60,
    to_wav_bytes,
    trim_rir,
)
from soundsright_async.audio.dataset.noise import synthetic_noise
from soundsright_async.audio.testsignals import speech_like

SR = 16000


def _lufs(x: np.ndarray, sr: int = SR) -> float:
    return float(pyloudnorm.Meter(sr).integrated_loudness(x))


def _decay_rir(t60: float, sr: int, seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    h = rng.standard_normal(t.size) * 10 ** (-3 * t / t60)
    h[0] = 5 * np.max(np.abs(h))
    return h


def test_snr_is_the_loudness_difference() -> None:
    clean = normalize_clean(speech_like(4.0, SR, 1), SR)
    noise = np.random.default_rng(2).standard_normal(clean.size)
    c, d, snr = mix_at_snr(clean, noise, 5.0, SR)
    assert snr == 5.0
    n = d - c
    interior = slice(SR // 10, -SR // 10)
    assert _lufs(c[interior]) - _lufs(n[interior]) == pytest.approx(5.0, abs=0.1)


def test_snr_rises_one_db_at_a_time_until_the_peak_is_below_one() -> None:
    clean = 0.9 * speech_like(3.0, SR, 3) / 0.5
    noise = np.random.default_rng(4).standard_normal(clean.size)
    _, d, snr = mix_at_snr(clean, noise, -2.5, SR)
    assert np.max(np.abs(d)) < 1.0
    k = snr - (-2.5)
    assert k >= 1
    assert k == int(k)
    gain = 10 ** (((_lufs(clean) - (snr - 1)) - _lufs(noise)) / 20)
    assert np.max(np.abs(apply_fades(clean, SR) + gain * apply_fades(noise, SR))) >= 1.0


def test_silent_noise_and_clipping_clean_are_errors_not_hangs() -> None:
    clean = normalize_clean(speech_like(2.0, SR, 5), SR)
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(clean, np.zeros_like(clean), 5.0, SR)
    with pytest.raises(ValueError, match="peaks"):
        mix_at_snr(clean / np.max(np.abs(clean)), np.ones_like(clean), 5.0, SR)


def test_fades_are_10_ms_linear_ramps() -> None:
    for sr, n in ((16000, 160), (48000, 480)):
        y = apply_fades(np.ones(sr), sr)
        assert y[0] == 0.0
        assert y[-1] == 0.0
        assert np.allclose(y[:n], np.linspace(0, 1, n))
        assert np.all(y[n:-n] == 1.0)


def test_fit_length_tiles_short_noise_and_cuts_long_noise() -> None:
    assert list(fit_length(np.arange(3.0), 7)) == [0, 1, 2, 0, 1, 2, 0]
    assert list(fit_length(np.arange(10.0), 3, offset=4)) == [4, 5, 6]


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_rt60_of_an_exponential_decay(sr: int) -> None:
    assert rt60(_decay_rir(0.5, sr), sr) == pytest.approx(0.5, abs=0.02)


def test_rt60_is_measured_at_the_true_rate_after_resampling() -> None:
    h = _decay_rir(0.5, 44100)
    assert rt60(resample(h, 44100, 16000), 16000) == pytest.approx(0.5, abs=0.03)


def test_trim_rir_starts_at_the_direct_path() -> None:
    h = np.concatenate([np.zeros(100), _decay_rir(0.3, SR)])
    t = trim_rir(h)
    assert np.argmax(np.abs(t)) == 0
    assert np.max(np.abs(t)) == 1.0
    with pytest.raises(ValueError, match="silent"):
        trim_rir(np.zeros(10))


def test_reverberation_keeps_length_and_loudness() -> None:
    clean = normalize_clean(speech_like(3.0, SR, 7), SR)
    c, wet = reverberate(clean, trim_rir(_decay_rir(0.8, SR)), SR)
    assert wet.size == clean.size
    assert np.max(np.abs(wet)) < 1.0
    assert _lufs(wet) == pytest.approx(_lufs(c), abs=0.1)


def test_synthetic_noise_is_seeded() -> None:
    a, da = synthetic_noise(3, 8000, SR)
    b, db = synthetic_noise(3, 8000, SR)
    c, _ = synthetic_noise(4, 8000, SR)
    assert np.array_equal(a, b)
    assert da == db
    assert not np.array_equal(a, c)
    assert np.max(np.abs(a)) == pytest.approx(1.0)


def test_wav_bytes_are_16bit_and_refuse_nan() -> None:
    data = to_wav_bytes(np.zeros(10), SR)
    assert data[:4] == b"RIFF"
    assert len(data) == 44 + 20
    with pytest.raises(ValueError, match="finite"):
        to_wav_bytes(np.array([np.nan]), SR)
