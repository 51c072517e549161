"""Offline dataset generation: determinism, SNR / RT60 rules, file format, metric ceilings."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from soundsright_async.audio.dataset import (
    Dataset,
    DatasetError,
    DatasetSpec,
    Manifest,
    Prompter,
    Sources,
    SpeechClip,
    SpeechRequest,
    SyntheticNoiseSource,
    generate_dataset,
)
from soundsright_async.audio.dataset.espeak import espeak_synthesize
from soundsright_async.audio.dataset.mixing import rt60
from soundsright_async.audio.dataset.rir import SyntheticRir
from soundsright_async.audio.metrics import score_dataset
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import COMPETITIONS, METRICS, Metric, Task, get_competition

COUNT = 3
SEED = 11


def _generate(name: str, out: Path, seed: int = SEED, count: int = COUNT) -> Dataset:
    async def go() -> Dataset:
        async with ScoringPool(workers=2) as pool:
            spec = DatasetSpec(get_competition(name), count=count, seed=seed, out=out, sentences=1)
            return await generate_dataset(spec, pool=pool)

    return asyncio.run(go())


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    root = tmp_path_factory.mktemp("datasets")
    return {c.name: _generate(c.name, root / c.name) for c in COMPETITIONS}


# ----------------------------------------------------------------------------- sentences


def test_prompts_match_the_reference_golden_values() -> None:
    p = Prompter(random.Random(10))
    assert p.prompt() == (
        "A murder improvises listing. The utter will weaves whip. The green armament waters. "
        "The wide authority stamps hippodrome. "
    )
    p = Prompter(random.Random(10))
    assert [
        p.bare_bone_sentence(),
        p.simple_sentence(),
        p.bare_bone_with_adjective(),
        p.sentence(),
    ] == [
        "The prevention verbalizes.",
        "The airplane weaves promenade.",
        "Rural yarn obtains.",
        "The green armament waters theology.",
    ]


def test_prompts_are_seeded_and_seed_zero_is_a_seed() -> None:
    a = [Prompter(random.Random(0)).prompt() for _ in range(2)]
    assert a[0] == a[1]
    assert Prompter(random.Random(0)).prompt() != Prompter(random.Random(1)).prompt()
    assert Prompter(random.Random(3), sentences=2).prompt().count(". ") == 2


def test_espeak_is_deterministic_and_rejects_unknown_voices() -> None:
    a, rate = espeak_synthesize("The cat sleeps.", "en-us+f2", 1.1)
    b, _ = espeak_synthesize("The cat sleeps.", "en-us+f2", 1.1)
    assert rate == 22050
    assert np.array_equal(a, b)
    assert 0.3 < a.size / rate < 5
    with pytest.raises(ValueError, match="no voice"):
        espeak_synthesize("x", "xx-nonexistent")


# ----------------------------------------------------------------------------- datasets


def test_layout_and_manifest(datasets: dict[str, Dataset]) -> None:
    for name, ds in datasets.items():
        comp = get_competition(name)
        clean = sorted(p.name for p in ds.clean_dir.glob("*.wav"))
        degraded = sorted(p.name for p in ds.degraded_dir.glob("*.wav"))
        assert clean == degraded == [f"{i:04d}.wav" for i in range(COUNT)]
        manifest = Manifest.from_json((ds.path / "manifest.json").read_bytes())
        assert manifest == ds.manifest
        assert manifest.competition == name
        assert manifest.seed == SEED
        assert manifest.sources["speech"] == "espeak"
        for entry in manifest.files:
            assert entry.text
            assert entry.voice
            assert entry.clean_sha256 == _sha(ds.clean_dir / entry.name)
            assert entry.degraded_sha256 == _sha(ds.degraded_dir / entry.name)
            if comp.task is Task.DENOISING:
                assert entry.snr_db is not None
                assert entry.noise
                assert entry.rir is None
            else:
                assert entry.rt60_s is not None
                assert entry.rir
                assert entry.snr_db is None
        assert not list(ds.path.parent.glob(".*partial*"))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_files_are_finite_mono_16bit_at_the_competition_rate(
    datasets: dict[str, Dataset],
) -> None:
    for name, ds in datasets.items():
        rate = get_competition(name).sample_rate
        for path in [*ds.clean_dir.glob("*.wav"), *ds.degraded_dir.glob("*.wav")]:
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.subtype) == (rate, 1, "PCM_16")
            x, _ = sf.read(str(path))
            assert np.all(np.isfinite(x))
            assert np.max(np.abs(x)) <= 1.0
            assert x[0] == 0.0
            assert x[-1] == 0.0


def test_denoising_snr_is_within_range(datasets: dict[str, Dataset]) -> None:
    for name in ("DENOISING_16000HZ", "DENOISING_48000HZ"):
        ds = datasets[name]
        for entry in ds.manifest.files:
            clean, rate = sf.read(str(ds.clean_dir / entry.name))
            degraded, _ = sf.read(str(ds.degraded_dir / entry.name))
            meter = pyloudnorm.Meter(rate)
            measured = meter.integrated_loudness(clean) - meter.integrated_loudness(
                degraded - clean
            )
            assert -2.5 <= measured <= 18.5, (name, entry.name, measured)
            assert entry.snr_db is not None
            assert abs(measured - entry.snr_db) < 0.5


def test_dereverberation_rirs_have_rt60_at_most_2s(datasets: dict[str, Dataset]) -> None:
    for name in ("DEREVERBERATION_16000HZ", "DEREVERBERATION_48000HZ"):
        ds = datasets[name]
        rate = get_competition(name).sample_rate
        for entry in ds.manifest.files:
            assert entry.rt60_s is not None
            assert 0 < entry.rt60_s <= 2.0
            assert entry.rir is not None
            seed = int(entry.rir.split(":")[1].split()[0])
            h, measured, _ = SyntheticRir(seed).render(rate)
            assert measured == pytest.approx(entry.rt60_s, abs=1e-3)
            assert rt60(h, rate) <= 2.0
            # it starts at the direct sound (not necessarily the largest sample, see
            # test_dataset_honest.py), and its RT60 is within 20% of the room's target
            assert int(np.argmax(np.abs(h[:4]))) == 0
            target = float(entry.rir.split("target RT60 ")[1].split(" s")[0])
            assert abs(entry.rt60_s / target - 1) <= 0.2 + 0.01 / target  # target is rounded


@pytest.mark.parametrize("name", [c.name for c in COMPETITIONS])
def test_clean_against_clean_scores_the_metric_ceilings(
    datasets: dict[str, Dataset], name: str
) -> None:
    ds = datasets[name]
    result = score_dataset(name, ds.clean_dir, ds.clean_dir, ds.degraded_dir)
    for metric, r in result.metrics.items():
        assert not r.failed
        if metric is Metric.PESQ:
            assert r.average >= METRICS[metric].ceiling  # wideband PESQ tops out at 4.64
        else:
            assert r.average == pytest.approx(METRICS[metric].ceiling, abs=1e-6)


def test_same_seed_is_byte_identical_and_another_seed_differs(
    datasets: dict[str, Dataset], tmp_path: Path
) -> None:
    for name in ("DENOISING_16000HZ", "DEREVERBERATION_48000HZ"):
        again = _generate(name, tmp_path / f"again-{name}")
        assert _tree_digest(again.path) == _tree_digest(datasets[name].path)
    other = _generate("DENOISING_16000HZ", tmp_path / "other", seed=SEED + 1, count=6)
    first = _generate("DENOISING_16000HZ", tmp_path / "first6", count=6)
    texts = [[f.text for f in d.manifest.files] for d in (first, other)]
    voices = [[f.voice for f in d.manifest.files] for d in (first, other)]
    noises = [[f.noise for f in d.manifest.files] for d in (first, other)]
    assert texts[0] != texts[1]
    assert voices[0] != voices[1]
    assert noises[0] != noises[1]
    assert not set(texts[0]) & set(texts[1])
    # the first files of a longer run are the files of a shorter run (plans are per index)
    assert [f.text for f in first.manifest.files[:COUNT]] == [
        f.text for f in datasets["DENOISING_16000HZ"].manifest.files
    ]


# ----------------------------------------------------------------------------- failures


class _FailingSpeech:
    """A speech source whose third clip fails."""

    name = "failing"
    speed_range = (1.0, 1.0)

    async def voices(self) -> Sequence[str]:
        return ("v1", "v2")

    async def synthesize(self, request: SpeechRequest) -> SpeechClip:
        if request.index == 2:
            raise DatasetError("boom")
        t = np.arange(16000) / 16000
        return SpeechClip(0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(3 * t)), 16000)


async def test_a_failure_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    spec = DatasetSpec(get_competition("DENOISING_16000HZ"), count=4, seed=1, out=out)
    async with ScoringPool(workers=1) as pool:
        sources = Sources(_FailingSpeech(), SyntheticNoiseSource())
        with pytest.raises(DatasetError, match="boom"):
            await generate_dataset(spec, pool=pool, sources=sources)
    assert not out.exists()
    assert _names(tmp_path) == []


async def test_an_existing_directory_is_refused_unless_overwrite(tmp_path: Path) -> None:
    from soundsright_async._exceptions import InputError

    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep").write_text("x")
    spec = DatasetSpec(get_competition("DEREVERBERATION_16000HZ"), 1, 2, out, sentences=1)
    async with ScoringPool(workers=1) as pool:
        with pytest.raises(InputError, match="already exists"):
            await generate_dataset(spec, pool=pool)
        assert (out / "keep").exists()
        spec = DatasetSpec(spec.competition, 1, 2, out, sentences=1, overwrite=True)
        ds = await generate_dataset(spec, pool=pool)
    assert not (out / "keep").exists()
    assert len(ds.manifest.files) == 1
    assert _names(tmp_path) == ["ds"]


def test_spec_validation() -> None:
    comp = get_competition("DENOISING_16000HZ")
    for bad in ({"count": 0}, {"seed": -1}, {"sentences": 0}):
        kwargs = {"count": 1, "seed": 0, "sentences": 1, **bad}
        with pytest.raises(ValueError, match="must be"):
            DatasetSpec(comp, out=Path("x"), **kwargs)  # type: ignore[arg-type]
    assert math.isfinite(0.0)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())
