"""Datasets that reward enhancement only (issue 16): speech and noise share one band, noise has
no DC or sub-audible energy, synthetic rooms hit their RT60 and keep the direct path, and the
sources follow the network."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
import pytest
import soundfile as sf
from scipy import signal

from soundsright_async._exceptions import ConfigError
from soundsright_async.audio.dataset import Dataset, DatasetSpec, Manifest, generate_dataset
from soundsright_async.audio.dataset.band import Band, band_limit, band_mask, speech_band
from soundsright_async.audio.dataset.choice import SourceChoice, resolve_sources
from soundsright_async.audio.dataset.mixing import rt60
from soundsright_async.audio.dataset.noise import coloured_noise, synthetic_noise
from soundsright_async.audio.dataset.rir import synthetic_room
from soundsright_async.audio.metrics import energy_ratios
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import get_competition
from soundsright_async.config import DatasetSettings


def _power(x: np.ndarray) -> np.ndarray:
    # a Hann window, so the measurement itself does not leak energy across the band edges
    return np.asarray(np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2)


def _energy_below(x: np.ndarray, rate: int, hz: float) -> float:
    """Fraction of the energy of ``x`` below ``hz``."""
    power = _power(x)
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return float(power[freqs < hz].sum() / power.sum())


def _energy_above(x: np.ndarray, rate: int, hz: float) -> float:
    power = _power(x)
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return float(power[freqs > hz].sum() / power.sum())


# ----------------------------------------------------------------------------- band


def test_speech_band_edges() -> None:
    assert speech_band(22050, 48000) == Band(50.0, 10473.75)  # espeak-ng at 48 kHz
    assert speech_band(22050, 16000) == Band(50.0, 7600.0)
    assert speech_band(44100, 48000) == Band(50.0, 20947.5)  # ElevenLabs pcm_44100
    band = Band(50.0, 10000.0)
    assert band_mask(np.array([0.0, 49.9, 50.0, 55.0, 60.0, 9500.0, 10000.0]), band).tolist() == [
        0.0,
        0.0,
        0.0,
        pytest.approx(0.5),
        1.0,
        1.0,
        0.0,
    ]


def test_band_limit_removes_everything_outside_the_band() -> None:
    rate = 48000
    x = np.random.default_rng(0).standard_normal(rate * 3) + 0.3  # DC offset too
    y = band_limit(x, rate, speech_band(22050, rate))
    assert y.size == x.size
    assert abs(float(np.mean(y))) < 5e-4  # the input's mean is 0.3
    assert _energy_below(y, rate, 49.0) < 5e-5  # the input has 8% of its energy at DC
    assert _energy_above(y, rate, 10_600.0) < 1e-6
    assert 0.40 < float(np.mean(y**2)) < 0.45  # 10.4 of 24 kHz of unit white noise is kept


@pytest.mark.parametrize("colour", [0.0, 1.0, 2.0, -1.0])
def test_coloured_noise_has_no_dc(colour: float) -> None:
    x = coloured_noise(np.random.default_rng(3), 48_001, colour, 200 / 48000)  # prime-ish n
    assert x.size == 48_001
    assert abs(float(np.mean(x))) < 1e-12
    assert float(np.sqrt(np.mean(x**2))) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_noise_as_mixed_has_no_dc_and_nothing_below_50_hz(seed: int) -> None:
    rate = 48000
    noise, _ = synthetic_noise(seed, 4 * rate, rate)
    y = band_limit(noise, rate, speech_band(22050, rate))
    assert abs(float(np.mean(y))) / float(np.sqrt(np.mean(y**2))) < 1e-3  # was up to 0.235 FS
    assert _energy_below(y, rate, 49.0) < 1e-6
    # a 50 Hz high-pass removes (almost) none of it: the brown/pink shelf starts at 200 Hz
    sos = signal.butter(4, 50.0, btype="highpass", fs=rate, output="sos")
    kept = float(np.sum(signal.sosfiltfilt(sos, y) ** 2) / np.sum(y**2))
    assert kept > 0.93


# ----------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def denoising_48k(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    async def go() -> Dataset:
        async with ScoringPool(workers=2) as pool:
            spec = DatasetSpec(
                get_competition("DENOISING_48000HZ"),
                count=4,
                seed=5,
                out=tmp_path_factory.mktemp("honest") / "ds",
                sentences=1,
            )
            return await generate_dataset(spec, pool=pool)

    return asyncio.run(go())


def test_48k_speech_and_noise_share_the_speech_band(denoising_48k: Dataset) -> None:
    """Nothing above the speech's top edge, so an 11 kHz low-pass or a 50 Hz high-pass of the
    degraded file gains (almost) nothing."""
    gains: dict[str, list[float]] = {"lowpass": [], "highpass": []}
    for entry in denoising_48k.manifest.files:
        clean, rate = sf.read(denoising_48k.clean_dir / entry.name, dtype="float64")
        degraded, _ = sf.read(denoising_48k.degraded_dir / entry.name, dtype="float64")
        noise = degraded - clean
        assert rate == 48000
        assert _energy_above(clean, rate, 10_600.0) < 1e-5
        assert _energy_above(noise, rate, 10_600.0) < 1e-5
        assert _energy_below(noise, rate, 45.0) < 1e-5
        assert abs(float(np.mean(noise))) < 1e-4
        base = energy_ratios(clean, degraded, noise).si_sdr
        for cutoff, kind in ((11_000.0, "lowpass"), (50.0, "highpass")):
            sos = signal.butter(4, cutoff, btype=kind, fs=rate, output="sos")
            filtered = signal.sosfiltfilt(sos, degraded)
            gains[kind].append(energy_ratios(clean, filtered, noise).si_sdr - base)
    # the 4th-order Butterworth filters still reach a little into the band (blue noise near
    # the top, 60 Hz hum at the bottom), but gain nothing like the +1.7 / +2.9 dB they did
    assert max(gains["lowpass"]) < 0.5
    assert max(gains["highpass"]) < 0.5
    assert float(np.mean(gains["lowpass"] + gains["highpass"])) < 0.2


# ----------------------------------------------------------------------------- rooms


@pytest.mark.parametrize("rate", [16000, 48000])
def test_synthetic_rooms_match_their_rt60_and_keep_the_direct_path(rate: int) -> None:
    cut_before_the_peak = 0
    for seed in range(12):
        room = synthetic_room(seed, rate)
        measured = rt60(room.rir, rate)  # Schroeder T30 of the RIR as used
        assert measured == pytest.approx(room.rt60_s, abs=1e-12)
        assert abs(measured / room.target_rt60_s - 1) <= 0.2
        # the direct path, simulated alone (image order 0), arrives exactly at the cut
        direct = pra.ShoeBox(list(room.dims), fs=rate, max_order=0, air_absorption=False)
        direct.add_source(list(room.source))
        direct.add_microphone(list(room.mic))
        direct.compute_rir()
        h0 = np.asarray(direct.rir[0][0], dtype=np.float64)
        assert int(np.argmax(np.abs(h0))) == room.direct_index
        assert int(np.argmax(np.abs(room.rir[:4]))) == 0
        if int(np.argmax(np.abs(room.rir))) > 0:  # a reflection sum is louder than the direct
            cut_before_the_peak += 1
    assert cut_before_the_peak >= 1  # cutting at the peak would have dropped their direct path


# ----------------------------------------------------------------------------- sources


@pytest.mark.parametrize(
    ("network", "settings", "expected"),
    [
        ("finney", {}, SourceChoice("elevenlabs", "wham", "arni")),
        ("test", {}, SourceChoice("elevenlabs", "wham", "arni")),
        ("localnet", {}, SourceChoice("espeak", "synthetic", "synthetic")),
        ("local", {}, SourceChoice("espeak", "synthetic", "synthetic")),
        ("ws://10.0.0.1:9944", {}, SourceChoice("espeak", "synthetic", "synthetic")),
        (
            "finney",
            {"speech": "espeak", "noise": "synthetic", "rir": "synthetic"},
            SourceChoice("espeak", "synthetic", "synthetic"),
        ),
        ("test", {"rir": "synthetic"}, SourceChoice("elevenlabs", "wham", "synthetic")),
        ("localnet", {"noise": "wham"}, SourceChoice("espeak", "wham", "synthetic")),
    ],
)
def test_sources_follow_the_network_unless_set(
    network: str, settings: dict[str, str], expected: SourceChoice
) -> None:
    choice = resolve_sources(network, DatasetSettings.model_validate(settings), True)
    assert choice == expected


def test_offline_kinds() -> None:
    assert SourceChoice("elevenlabs", "wham", "synthetic").offline == ("rir",)
    assert SourceChoice("espeak", "synthetic", "arni").offline == ("speech", "noise")


def test_a_real_network_without_an_elevenlabs_key_stops_start_up() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_sources("finney", DatasetSettings(), False)
    assert str(info.value) == (
        "dataset.speech: the finney network uses ElevenLabs speech unless [dataset] sets speech = "
        '"espeak"; it needs the ELEVENLABS_API_KEY environment variable (or '
        "ELEVENLABS_API_KEY_FILE, or the systemd credential elevenlabs_api_key)"
    )
    with pytest.raises(ConfigError, match=r'^dataset.speech: speech = "elevenlabs"; it needs'):
        resolve_sources("localnet", DatasetSettings(speech="elevenlabs"), False)
    offline = DatasetSettings(speech="espeak")
    assert resolve_sources("finney", offline, False) == SourceChoice("espeak", "wham", "arni")


def test_the_shipped_validator_config_leaves_the_choice_to_the_network() -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "config" / "validator.toml").read_text()
    section = text.split("[dataset]")[1].split("\n[")[0]
    assert not any(line.startswith(("speech", "noise", "rir")) for line in section.splitlines())


def test_a_version_1_manifest_without_redraws_still_loads() -> None:
    raw = (
        b'{"competition": "DENOISING_16000HZ", "count": 1, "sample_rate": 16000, "seed": 1,'
        b' "sources": {"speech": "espeak", "noise": "synthetic"}, "task": "DENOISING",'
        b' "version": 1, "files": [{"name": "0000.wav", "text": "A cat sits.", "voice": "en-us",'
        b' "speed": 1.0, "duration_s": 1.5, "clean_sha256": "a", "degraded_sha256": "b",'
        b' "snr_db": 3.0, "noise": "synthetic:1:white", "rir": null, "rt60_s": null}]}'
    )
    manifest = Manifest.from_json(raw)
    assert manifest.version == 1
    assert manifest.files[0].redraws == ()
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
