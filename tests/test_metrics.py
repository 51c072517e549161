from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from pesq import pesq
from pystoi import stoi

from soundsright_async import InputError, ScoringError
from soundsright_async.audio.metrics import (
    _ratio_db,
    aggregate,
    energy_ratios,
    estoi_score,
    list_clean_files,
    mean_confidence_interval,
    pesq_score,
    read_checked,
    score_dataset,
    score_file,
)
from soundsright_async.audio.testsignals import speech_like, write_scoring_fixture
from soundsright_async.competitions import Metric, get_competition

D16 = get_competition("DENOISING_16000HZ")
D48 = get_competition("DENOISING_48000HZ")
R48 = get_competition("DEREVERBERATION_48000HZ")


def _read(path: Path) -> np.ndarray:
    data, _ = sf.read(str(path), dtype="float64")
    return data


# ------------------------------------------------------------------ SI-SDR / SIR / SAR


def test_energy_ratios_reference_vector() -> None:
    s = np.array([1.0, 0.0, 0.0, 0.0])
    n = np.array([0.0, 1.0, 0.0, 0.0])
    est = np.array([1.0, 0.1, 0.05, 0.0])
    r = energy_ratios(s, est, n)
    assert (round(r.si_sdr, 4), round(r.si_sir, 4), round(r.si_sar, 4)) == (
        19.0309,
        20.0,
        26.0206,
    )
    assert r.si_sdr == pytest.approx(10 * math.log10(1 / 0.0125), abs=1e-12)
    assert r.si_sir == pytest.approx(20.0, abs=1e-12)
    assert r.si_sar == pytest.approx(10 * math.log10(1 / 0.0025), abs=1e-12)


def test_energy_ratios_are_scale_invariant() -> None:
    s = np.array([1.0, 0.0, 0.0, 0.0])
    n = np.array([0.0, 1.0, 0.0, 0.0])
    est = np.array([1.0, 0.1, 0.05, 0.0])
    assert energy_ratios(s, 3.0 * est, n) == pytest.approx(energy_ratios(s, est, n), abs=1e-9)


def test_perfect_copy_is_clipped_not_infinite() -> None:
    s = speech_like(0.5, 16000, seed=1)
    n = 0.1 * np.random.default_rng(0).standard_normal(s.size)
    assert energy_ratios(s, s, n) == (100.0, 100.0, 100.0)
    # no noise reference at all (scoring clean against clean): every ratio is the ceiling
    assert energy_ratios(s, s, np.zeros_like(s)) == (100.0, 100.0, 100.0)


def test_noise_reference_is_orthogonalised_against_the_clean_signal() -> None:
    s = np.array([1.0, 0.0, 0.0, 0.0])
    n = np.array([0.5, 1.0, 0.0, 0.0])  # half of it is really more "speech"
    est = np.array([1.0, 0.1, 0.05, 0.0])
    # only n's component orthogonal to s ([0, 1, 0, 0]) counts as interference
    assert energy_ratios(s, est, n) == pytest.approx(
        energy_ratios(s, est, np.array([0.0, 1.0, 0.0, 0.0])), abs=1e-12
    )
    # the output is the clean signal plus a bit of the noise: no artefacts at all
    r = energy_ratios(s, s + 0.1 * n, n)
    assert r.si_sar == 100.0
    assert r.si_sir == pytest.approx(10 * math.log10(1.05**2 / 0.01), abs=1e-9)  # s_target=1.05s


def test_silent_output_scores_the_floor() -> None:
    s = np.array([1.0, 0.5, -0.5, 0.0])
    assert energy_ratios(s, np.zeros(4), np.array([0.0, 1.0, 0.0, 1.0])) == (-100.0, -100.0, -100.0)


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [
        (1.0, math.nan, -100.0),  # was +100: a NaN distortion must not earn the ceiling
        (math.nan, 1.0, -100.0),
        (1.0, math.inf, -100.0),
        (math.inf, 1.0, -100.0),
        (0.0, 0.0, -100.0),
        (1.0, 0.0, 100.0),
        (1e-300, 1e300, -100.0),  # the ratio underflows to 0
        (1e300, 1e-300, 100.0),
        (10.0, 1.0, 10.0),
        (1.0, 100.0, -20.0),
    ],
)
def test_ratio_db_edges(num: float, den: float, expected: float) -> None:
    assert _ratio_db(num, den) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 2.0), st.floats(0.0, 2.0))
def test_property_si_sdr_is_at_most_si_sir_and_si_sar(seed: int, leak: float, art: float) -> None:
    """Interference and artefact errors are orthogonal, so SDR <= min(SIR, SAR) (in dB, also
    after clipping). judging's gate relies on it: a candidate above the unprocessed input's
    SI-SDR is above it on SI-SIR and SI-SAR too."""
    rng = np.random.default_rng(seed)
    s, n, a = rng.standard_normal((3, 64))
    r = energy_ratios(s, s + leak * n + art * a, n)
    assert r.si_sdr <= r.si_sir + 1e-9
    assert r.si_sdr <= r.si_sar + 1e-9


def test_energy_ratios_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        energy_ratios(np.zeros(4), np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------ confidence interval


def test_mean_and_confidence_interval() -> None:
    mean, ci = mean_confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert ci is not None
    assert ci == pytest.approx((-0.484138, 4.484138), abs=1e-6)
    assert mean_confidence_interval([4.25]) == (4.25, None)
    assert mean_confidence_interval([2.0, 2.0]) == (2.0, (2.0, 2.0))
    with pytest.raises(ValueError, match="no scores"):
        mean_confidence_interval([])


# ------------------------------------------------------------------ PESQ / ESTOI


def test_pesq_and_estoi_match_the_libraries(tmp_path: Path) -> None:
    fx = write_scoring_fixture(tmp_path, D16, files=2, seconds=3.0, seed=4)
    for name in fx.names:
        clean, enh = _read(fx.clean / name), _read(fx.enhanced / name)
        result = score_file(D16, fx.clean / name, fx.enhanced / name)
        assert result.failed == {}
        expected_pesq = pesq(16000, clean, enh, "wb")
        assert abs(result.scores[Metric.PESQ] - expected_pesq) < 1e-6
        assert 1.0 < expected_pesq < 4.5
        np.random.seed(0)  # the seed our ESTOI uses for pystoi's internal noise
        expected_estoi = stoi(clean, enh, 16000, extended=True)
        assert abs(result.scores[Metric.ESTOI] - expected_estoi) < 1e-6
        assert 0.0 < expected_estoi < 1.0
        # ESTOI is extended STOI, not classic STOI (reference bug B5)
        assert abs(expected_estoi - stoi(clean, enh, 16000, extended=False)) > 1e-3


def test_estoi_is_deterministic_and_restores_rng() -> None:
    clean = speech_like(2.0, 16000, seed=3)
    enh = clean + 0.05 * np.random.default_rng(1).standard_normal(clean.size)
    np.random.seed(1234)
    before = np.random.get_state()[1].copy()
    a = estoi_score(clean, enh, 16000)
    assert np.array_equal(np.random.get_state()[1], before)
    assert estoi_score(clean, enh, 16000) == a


def test_pesq_narrowband_at_8k_and_refused_elsewhere() -> None:
    clean = speech_like(3.0, 8000, seed=5)
    enh = clean + 0.02 * np.random.default_rng(2).standard_normal(clean.size)
    assert pesq_score(clean, enh, 8000) == pytest.approx(pesq(8000, clean, enh, "nb"), abs=1e-6)
    with pytest.raises(ValueError, match="only at 8000 and 16000 Hz"):
        pesq_score(clean, enh, 48000)


def test_clean_against_clean_gives_the_ceilings(tmp_path: Path) -> None:
    fx = write_scoring_fixture(tmp_path, D48, files=2, seconds=2.0, seed=6)
    result = score_dataset(D48, fx.clean, fx.clean, fx.noisy)
    assert result.metrics[Metric.ESTOI].average == pytest.approx(1.0, abs=1e-9)
    for metric in (Metric.SI_SDR, Metric.SI_SIR, Metric.SI_SAR):
        assert result.metrics[metric].average == 100.0
    fx16 = write_scoring_fixture(tmp_path / "16", D16, files=1, seconds=3.0, seed=6)
    result16 = score_dataset(D16, fx16.clean, fx16.clean)
    assert result16.metrics[Metric.PESQ].average == pytest.approx(4.643888, abs=1e-5)


# ------------------------------------------------------------------ enhanced-file failures


def _write(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> None:
    sf.write(str(path), data, rate, subtype=subtype)


def test_bad_enhanced_files_score_the_floor_with_reasons(tmp_path: Path) -> None:
    fx = write_scoring_fixture(tmp_path, D16, files=8, seconds=2.0, seed=7)
    enh = fx.enhanced
    good = _read(enh / "7.wav")
    os.remove(enh / "0.wav")
    _write(enh / "1.wav", np.stack([good, good], axis=1), 16000)
    _write(enh / "2.wav", good[::2], 8000)
    _write(enh / "3.wav", good[:-10], 16000)
    bad = good.astype(np.float32)
    bad[100] = np.nan
    _write(enh / "4.wav", bad, 16000, subtype="FLOAT")
    (enh / "5.wav").write_bytes(b"RIFF not really a wav file")
    os.remove(enh / "6.wav")
    os.symlink(fx.clean / "6.wav", enh / "6.wav")
    _write(enh / "extra.wav", good, 16000)  # extra files are ignored

    result = score_dataset(D16, fx.clean, enh)
    assert result.files == 8
    pesq_r, estoi_r = result.metrics[Metric.PESQ], result.metrics[Metric.ESTOI]
    reasons = dict(pesq_r.failed)
    assert reasons.pop("5.wav").startswith("unreadable: ")
    assert reasons == {
        "0.wav": "missing",
        "1.wav": "has 2 channels, expected mono",
        "2.wav": "sample rate 8000 Hz, expected 16000 Hz",
        "3.wav": f"length {good.size - 10} samples, expected {good.size}",
        "4.wav": "contains NaN or infinite samples",
        "6.wav": "is a symlink",
    }
    assert estoi_r.failed == pesq_r.failed
    assert [pesq_r.scores[f"{i}.wav"] for i in range(7)] == [-0.5] * 7
    assert [estoi_r.scores[f"{i}.wav"] for i in range(7)] == [-1.0] * 7
    assert "extra.wav" not in pesq_r.scores
    assert pesq_r.average == pytest.approx((7 * -0.5 + pesq_r.scores["7.wav"]) / 8, abs=1e-12)
    assert pesq_r.scores["7.wav"] > 1.0


def test_si_metrics_floor_for_missing_file(tmp_path: Path) -> None:
    fx = write_scoring_fixture(tmp_path, D48, files=2, seconds=1.0, seed=8)
    os.remove(fx.enhanced / "1.wav")
    result = score_dataset(D48, fx.clean, fx.enhanced, fx.noisy)
    for metric in (Metric.SI_SDR, Metric.SI_SIR, Metric.SI_SAR):
        assert result.metrics[metric].scores["1.wav"] == -100.0
        assert result.metrics[metric].failed == {"1.wav": "missing"}
    assert result.metrics[Metric.ESTOI].scores["1.wav"] == -1.0
    # the working file: white noise halved -> SI-SIR ~ 6 dB above the input's SNR
    assert 0.0 < result.metrics[Metric.SI_SDR].scores["0.wav"] < 100.0


def test_pesq_library_refusal_scores_the_floor(tmp_path: Path) -> None:
    fx = write_scoring_fixture(tmp_path, D16, files=1, seconds=2.0, seed=9)
    _write(fx.enhanced / "0.wav", np.zeros(32000), 16000)  # silence: PESQ finds no utterance
    r = score_file(D16, fx.clean / "0.wav", fx.enhanced / "0.wav")
    assert r.scores[Metric.PESQ] == -0.5
    assert r.failed[Metric.PESQ].startswith("PESQ failed: ")
    assert Metric.ESTOI not in r.failed


def test_reference_problems_are_errors_not_floors(tmp_path: Path) -> None:
    fx = write_scoring_fixture(tmp_path, D48, files=1, seconds=1.0, seed=10)
    with pytest.raises(ScoringError, match="needs the degraded file"):
        score_file(D48, fx.clean / "0.wav", fx.enhanced / "0.wav")
    (fx.clean / "0.wav").write_bytes(b"garbage")
    with pytest.raises(ScoringError, match=r"clean file .* unreadable"):
        score_file(D48, fx.clean / "0.wav", fx.enhanced / "0.wav", fx.noisy / "0.wav")
    with pytest.raises(InputError, match="needs the degraded"):
        score_dataset(R48, fx.clean, fx.enhanced)


def test_read_checked_reads_header_first(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    _write(path, np.zeros(100), 16000)
    data, reason = read_checked(path, sample_rate=16000, length=100)
    assert reason is None
    assert data is not None
    assert data.shape == (100,)
    assert read_checked(tmp_path, sample_rate=16000) == (None, "not a regular file")


def test_list_clean_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list_clean_files(tmp_path / "nope")
    with pytest.raises(InputError, match=r"no \*\.wav files"):
        list_clean_files(tmp_path)
    for name in ("b.WAV", "a.wav", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.wav").mkdir()
    assert list_clean_files(tmp_path) == ["a.wav", "b.WAV"]


def test_aggregate_rejects_empty_and_duplicates() -> None:
    from soundsright_async.audio.metrics import FileScore

    f = FileScore("a.wav", {Metric.PESQ: 1.0, Metric.ESTOI: 0.5})
    with pytest.raises(ValueError, match="no files"):
        aggregate(D16, [])
    with pytest.raises(ValueError, match="duplicate"):
        aggregate(D16, [f, f])
    r = aggregate(D16, [f, FileScore("b.wav", {Metric.PESQ: 3.0, Metric.ESTOI: 0.5})])
    assert r.to_dict()["metrics"]["PESQ"] == {
        "average": 2.0,
        "confidence_interval": [
            pytest.approx(2.0 - 12.706204736 * 1.0),
            pytest.approx(2.0 + 12.706204736 * 1.0),
        ],
        "scores": {"a.wav": 1.0, "b.wav": 3.0},
        "failed": {},
    }
