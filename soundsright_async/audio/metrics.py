"""Speech-enhancement metrics: PESQ, ESTOI, SI-SDR/SI-SIR/SI-SAR, per file and per dataset.

Rules (design.md §4, reference/validator.md §4):

* Files are matched by name against the clean set: every clean ``*.wav`` must have an enhanced
  file of the same name. Extra enhanced files are ignored.
* A missing, unreadable, multi-channel, wrong-rate, wrong-length or non-finite enhanced file
  scores the metric's floor (PESQ -0.5, ESTOI -1.0, SI-* -100 dB) and is listed with its reason;
  it is never dropped. So is a file the metric library refuses (e.g. PESQ finds no speech).
* Per-file SI-* values are clipped to [-100, 100] dB, so a perfect copy never yields infinity.
* The dataset score is the mean over all clean files, with a 95% Student-t confidence interval
  (``None`` for fewer than two files).

The numeric functions are pure. ``score_file`` reads three WAV files and is what the process pool
runs; ``aggregate`` turns per-file results into the dataset result.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import stats

from .._exceptions import InputError, ScoringError
from ..competitions import METRICS, Competition, Metric, get_competition

__all__ = [
    "SI_CLIP_DB",
    "DatasetScore",
    "EnergyRatios",
    "FileScore",
    "MetricResult",
    "aggregate",
    "energy_ratios",
    "estoi_score",
    "list_clean_files",
    "mean_confidence_interval",
    "pesq_score",
    "read_checked",
    "score_dataset",
    "score_file",
]

Audio = npt.NDArray[np.float64]

SI_CLIP_DB = 100.0
_PESQ_MODES = {16000: "wb", 8000: "nb"}
_ESTOI_SEED = 0


# --------------------------------------------------------------------------- pure metrics


def pesq_score(clean: Audio, enhanced: Audio, sample_rate: int) -> float:
    """PESQ: wideband at 16 kHz, narrowband at 8 kHz. Other rates raise ``ValueError``."""
    mode = _PESQ_MODES.get(sample_rate)
    if mode is None:
        raise ValueError(f"PESQ is defined only at 8000 and 16000 Hz, not {sample_rate} Hz")
    from pesq import pesq

    return float(pesq(sample_rate, clean, enhanced, mode))


@contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    # pystoi's extended mode adds EPS-scale noise from numpy's global RNG; seeding it makes
    # ESTOI a deterministic function of its inputs. The caller's RNG state is restored.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def estoi_score(clean: Audio, enhanced: Audio, sample_rate: int) -> float:
    """Extended STOI (``pystoi.stoi(..., extended=True)``), deterministic for given inputs."""
    from pystoi import stoi

    with _seeded_global_numpy(_ESTOI_SEED):
        return float(stoi(clean, enhanced, sample_rate, extended=True))


class EnergyRatios(NamedTuple):
    si_sdr: float
    si_sir: float
    si_sar: float


def _dot(a: Audio, b: Audio) -> float:
    # numpy's pairwise summation, not BLAS: the result does not depend on the BLAS thread
    # count, so a file scores bit-for-bit the same in a pool worker and in the main process.
    return float(np.sum(a * b))


def _ratio_db(num: float, den: float) -> float:
    """``10·log10(num / den)`` clipped to [-100, 100] dB. A NaN or infinite energy, or no target
    energy at all (silent output), scores the floor: only a finite, exactly zero distortion
    earns the ceiling, so a non-finite computation can never win."""
    if not (math.isfinite(num) and math.isfinite(den)) or not num > 0.0:
        return -SI_CLIP_DB
    if not den > 0.0:  # no distortion at all
        return SI_CLIP_DB
    ratio = num / den
    if ratio == 0.0:  # underflow: distortion beyond 1e308 times the target
        return -SI_CLIP_DB
    return float(np.clip(10.0 * math.log10(ratio), -SI_CLIP_DB, SI_CLIP_DB))


def energy_ratios(clean: Audio, enhanced: Audio, noise: Audio) -> EnergyRatios:
    """SI-SDR, SI-SIR, SI-SAR in dB, clipped to [-100, 100].

    With s = clean, ŝ = enhanced and n = the noise reference (degraded - clean), first made
    orthogonal to s (n⊥ = n - <n,s>/‖s‖²·s, as in BSS-eval's projection onto span{s, n}):
    s_target = <ŝ,s>/‖s‖²·s, e_noise = <ŝ,n⊥>/‖n⊥‖²·n⊥, e_art = ŝ - s_target - e_noise;
    SDR = ‖s_target‖²/‖ŝ - s_target‖², SIR = ‖s_target‖²/‖e_noise‖², SAR = ‖s_target‖²/‖e_art‖².
    The reference skipped the orthogonalisation, so speech that happened to correlate with the
    noise was counted twice and a perfect output could not reach the SIR/SAR ceiling. When s and
    n are orthogonal both definitions agree. A zero reference contributes nothing.
    """
    s = np.asarray(clean, dtype=np.float64)
    est = np.asarray(enhanced, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    if not (s.shape == est.shape == n.shape) or s.ndim != 1:
        raise ValueError(f"shapes differ: clean {s.shape}, enhanced {est.shape}, noise {n.shape}")
    ss = _dot(s, s)
    if ss > 0:
        n = n - (_dot(n, s) / ss) * s
    nn = _dot(n, n)
    s_target = (_dot(est, s) / ss) * s if ss > 0 else np.zeros_like(s)
    e_noise = (_dot(est, n) / nn) * n if nn > 0 else np.zeros_like(n)
    residual = est - s_target
    e_art = residual - e_noise
    target = _dot(s_target, s_target)
    return EnergyRatios(
        si_sdr=_ratio_db(target, _dot(residual, residual)),
        si_sir=_ratio_db(target, _dot(e_noise, e_noise)),
        si_sar=_ratio_db(target, _dot(e_art, e_art)),
    )


def mean_confidence_interval(
    scores: Sequence[float], confidence: float = 0.95
) -> tuple[float, tuple[float, float] | None]:
    """Mean and two-sided Student-t confidence interval (``None`` for fewer than two scores)."""
    if not scores:
        raise ValueError("no scores")
    values = np.asarray(scores, dtype=np.float64)
    mean = float(np.mean(values))
    if values.size < 2:
        return mean, None
    sem = float(np.std(values, ddof=1)) / math.sqrt(values.size)
    h = float(stats.t.ppf((1.0 + confidence) / 2.0, values.size - 1)) * sem
    return mean, (mean - h, mean + h)


# --------------------------------------------------------------------------- file checks


def read_checked(
    path: str | os.PathLike[str], *, sample_rate: int, length: int | None = None
) -> tuple[Audio | None, str | None]:
    """Read a mono WAV file and check it; returns ``(samples, None)`` or ``(None, reason)``.

    The header is checked before the samples are read, so a huge file is never loaded.
    """
    p = Path(path)
    if p.is_symlink():
        return None, "is a symlink"
    if not p.exists():
        return None, "missing"
    if not p.is_file():
        return None, "not a regular file"
    try:
        info = sf.info(str(p))
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        return None, f"unreadable: {_short(exc)}"
    if info.channels != 1:
        return None, f"has {info.channels} channels, expected mono"
    if info.samplerate != sample_rate:
        return None, f"sample rate {info.samplerate} Hz, expected {sample_rate} Hz"
    if length is not None and info.frames != length:
        return None, f"length {info.frames} samples, expected {length}"
    try:
        data, _ = sf.read(str(p), dtype="float64", always_2d=False)
    except Exception as exc:
        return None, f"unreadable: {_short(exc)}"
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 1 or (length is not None and data.size != length):
        return None, f"decoded to shape {data.shape}, expected ({length},)"
    if not np.all(np.isfinite(data)):
        return None, "contains NaN or infinite samples"
    return data, None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# --------------------------------------------------------------------------- per file


@dataclass(frozen=True, slots=True)
class FileScore:
    """Every metric's value for one file; failed metrics hold the floor and a reason."""

    name: str
    scores: Mapping[Metric, float]
    failed: Mapping[Metric, str] = field(default_factory=dict)


def _read_reference(path: Path, sample_rate: int, length: int | None, what: str) -> Audio:
    data, reason = read_checked(path, sample_rate=sample_rate, length=length)
    if data is None:
        raise ScoringError(f"{what} file {path} {reason}")
    return data


def score_file(
    competition: Competition | str,
    clean_path: str | os.PathLike[str],
    enhanced_path: str | os.PathLike[str],
    noisy_path: str | os.PathLike[str] | None = None,
) -> FileScore:
    """Score one enhanced file against its clean (and, for SI-*, degraded) reference.

    Problems with the references are ours and raise ``ScoringError``; problems with the enhanced
    file are the model's and score the floor.
    """
    comp = get_competition(competition) if isinstance(competition, str) else competition
    clean_p = Path(clean_path)
    clean = _read_reference(clean_p, comp.sample_rate, None, "clean")
    noisy: Audio | None = None
    if comp.needs_noisy:
        if noisy_path is None:
            raise ScoringError(f"{comp.name} needs the degraded file for {clean_p.name}")
        noisy = _read_reference(Path(noisy_path), comp.sample_rate, clean.size, "degraded")

    enhanced, reason = read_checked(enhanced_path, sample_rate=comp.sample_rate, length=clean.size)
    if enhanced is None:
        assert reason is not None
        return FileScore(
            clean_p.name,
            {m: METRICS[m].floor for m in comp.metrics},
            {m: reason for m in comp.metrics},
        )

    scores: dict[Metric, float] = {}
    failed: dict[Metric, str] = {}
    ratios: EnergyRatios | None = None
    for metric in comp.metrics:
        try:
            if metric is Metric.PESQ:
                value = pesq_score(clean, enhanced, comp.sample_rate)
            elif metric is Metric.ESTOI:
                value = estoi_score(clean, enhanced, comp.sample_rate)
            else:
                assert noisy is not None
                if ratios is None:
                    ratios = energy_ratios(clean, enhanced, noisy - clean)
                value = getattr(ratios, metric.value.lower())
        except Exception as exc:  # the metric library refused this output
            scores[metric] = METRICS[metric].floor
            failed[metric] = f"{metric.value} failed: {type(exc).__name__}: {_short(exc)}"
            continue
        if not math.isfinite(value):
            scores[metric] = METRICS[metric].floor
            failed[metric] = f"{metric.value} is not finite"
        else:
            scores[metric] = value
    return FileScore(clean_p.name, scores, failed)


# --------------------------------------------------------------------------- per dataset


@dataclass(frozen=True, slots=True)
class MetricResult:
    metric: Metric
    average: float
    confidence_interval: tuple[float, float] | None
    scores: Mapping[str, float]
    failed: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "average": self.average,
            "confidence_interval": (
                list(self.confidence_interval) if self.confidence_interval else None
            ),
            "scores": dict(self.scores),
            "failed": dict(self.failed),
        }


@dataclass(frozen=True, slots=True)
class DatasetScore:
    competition: str
    sample_rate: int
    files: int
    metrics: Mapping[Metric, MetricResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "competition": self.competition,
            "sample_rate": self.sample_rate,
            "files": self.files,
            "metrics": {m.value: r.to_dict() for m, r in self.metrics.items()},
        }


def aggregate(competition: Competition | str, files: Iterable[FileScore]) -> DatasetScore:
    """Per-metric mean and 95% CI over all files (failed files count at the floor)."""
    comp = get_competition(competition) if isinstance(competition, str) else competition
    ordered = sorted(files, key=lambda f: f.name)
    if not ordered:
        raise ValueError("no files to aggregate")
    names = [f.name for f in ordered]
    if len(set(names)) != len(names):
        raise ValueError("duplicate file names in scores")
    results: dict[Metric, MetricResult] = {}
    for metric in comp.metrics:
        per_file = {f.name: float(f.scores[metric]) for f in ordered}
        mean, ci = mean_confidence_interval(list(per_file.values()))
        failed = {f.name: f.failed[metric] for f in ordered if metric in f.failed}
        results[metric] = MetricResult(metric, mean, ci, per_file, failed)
    return DatasetScore(comp.name, comp.sample_rate, len(ordered), results)


def list_clean_files(clean_dir: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the ``*.wav`` files (any case) directly inside ``clean_dir``."""
    d = Path(clean_dir)
    if not d.is_dir():
        raise InputError(f"clean directory {d} does not exist or is not a directory")
    names = sorted(e.name for e in os.scandir(d) if e.name.lower().endswith(".wav") and e.is_file())
    if not names:
        raise InputError(f"no *.wav files in clean directory {d}")
    return names


def score_dataset(
    competition: Competition | str,
    clean_dir: str | os.PathLike[str],
    enhanced_dir: str | os.PathLike[str],
    noisy_dir: str | os.PathLike[str] | None = None,
) -> DatasetScore:
    """Score a whole dataset sequentially in this process (the pool does the same in parallel)."""
    comp = get_competition(competition) if isinstance(competition, str) else competition
    if comp.needs_noisy and noisy_dir is None:
        raise InputError(f"{comp.name} needs the degraded (noisy) directory for SI-* metrics")
    names = list_clean_files(clean_dir)
    return aggregate(
        comp,
        (
            score_file(
                comp,
                Path(clean_dir) / n,
                Path(enhanced_dir) / n,
                Path(noisy_dir) / n if noisy_dir is not None else None,
            )
            for n in names
        ),
    )
