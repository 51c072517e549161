"""The unprocessed input scored as a contestant, for real: a generated dataset, the process pool,
and the judge that gates on it."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundsright_async import ScoringError
from soundsright_async.audio.dataset import Dataset, DatasetSpec, generate_dataset
from soundsright_async.audio.metrics import score_dataset
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.audio.unprocessed import score_unprocessed, unprocessed_averages
from soundsright_async.competitions import Metric, get_competition
from soundsright_async.validator.judging import (
    EpochInput,
    ExclusionReason,
    ModelResult,
    Rule,
    judge_epoch,
)

D48 = get_competition("DENOISING_48000HZ")


@pytest.fixture(scope="module")
def d48(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    async def go() -> Dataset:
        async with ScoringPool(workers=2) as pool:
            spec = DatasetSpec(
                D48, count=2, seed=7, out=tmp_path_factory.mktemp("d48") / "ds", sentences=1
            )
            return await generate_dataset(spec, pool=pool)

    return asyncio.run(go())


def test_the_passthrough_holds_si_sar_at_the_ceiling_and_si_sdr_at_the_input_snr(
    d48: Dataset,
) -> None:
    async def go() -> object:
        async with ScoringPool(workers=2) as pool:
            return await score_unprocessed(pool, D48, d48.clean_dir, d48.degraded_dir)

    score = asyncio.run(go())
    assert score == score_dataset(D48, d48.clean_dir, d48.degraded_dir, d48.degraded_dir)
    assert score.files == 2
    sar = score.metrics[Metric.SI_SAR]
    assert dict(sar.scores) == {"0000.wav": 100.0, "0001.wav": 100.0}  # the ceiling: why we gate
    assert sar.failed == {}
    for name, value in score.metrics[Metric.SI_SDR].scores.items():
        clean, _ = sf.read(d48.clean_dir / name, dtype="float64")
        degraded, _ = sf.read(d48.degraded_dir / name, dtype="float64")
        target = float(np.dot(degraded, clean) / np.dot(clean, clean)) * clean
        snr = 10 * math.log10(np.sum(target**2) / np.sum((degraded - target) ** 2))
        assert value == pytest.approx(snr, abs=1e-9)
        assert score.metrics[Metric.SI_SIR].scores[name] == pytest.approx(snr, abs=1e-9)
    averages = unprocessed_averages(score)
    assert list(averages) == [Metric.ESTOI, Metric.SI_SDR, Metric.SI_SIR, Metric.SI_SAR]
    assert averages[Metric.SI_SAR] == 100.0

    # The judge, given these averages, pays a passthrough nothing and a real denoiser everything.
    passthrough = ModelResult("pass", 10, averages)
    better = {**averages, Metric.SI_SDR: averages[Metric.SI_SDR] + 0.5, Metric.SI_SAR: 12.3}
    j = judge_epoch(
        EpochInput(
            hotkeys=("pass", "gate"),
            unprocessed={D48.name: averages},
            results={D48.name: [passthrough, ModelResult("gate", 20, better)]},
        )
    )
    assert j.weights == (0.0, 1.0)
    sar_decision = next(d for d in j.decisions if d.metric is Metric.SI_SAR)
    assert (sar_decision.rule, sar_decision.winner_uid) == (Rule.NO_INCUMBENT, 1)
    assert [x.reason for x in sar_decision.excluded] == [ExclusionReason.NO_IMPROVEMENT]


def test_an_unusable_degraded_file_is_one_scoring_error(d48: Dataset, tmp_path: Path) -> None:
    degraded = tmp_path / "degraded"
    degraded.mkdir()
    for f in d48.degraded_dir.glob("*.wav"):
        (degraded / f.name).write_bytes(f.read_bytes())
    (degraded / "0001.wav").write_bytes(b"garbage")

    async def go() -> object:
        async with ScoringPool(workers=1) as pool:
            return await score_unprocessed(pool, D48, d48.clean_dir, degraded)

    with pytest.raises(ScoringError, match=r"degraded file .*1\.wav unreadable"):
        asyncio.run(go())
