"""``await generate_dataset(spec) -> Dataset``: plan, synthesise, mix, write atomically.

Speech comes from a ``SpeechSource`` (espeak-ng in the pool, or ElevenLabs over HTTP with its own
concurrency bound); mixing, convolution and resampling run in the process pool, one job per file.
A failed, silent or too short clip is redrawn with the next voice (in the source's voice
order), at most ``MAX_REDRAWS`` times, and the manifest records why; when every draw of a clip
fails, the source is down: ``SourceUnavailableError``. Any failure cancels the rest and leaves
nothing under the final path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from ..._exceptions import InputError
from ...competitions import Competition, Task
from ..pool import ScoringPool
from .constants import MAX_REDRAWS, SENTENCES_PER_PROMPT
from .errors import DatasetError, SourceUnavailableError, SpeechAccountError, SpeechSourceError
from .espeak import EspeakSource
from .manifest import MANIFEST_NAME, FileEntry, Manifest
from .noise import SyntheticNoiseSource
from .plan import plan_dataset
from .render import ClipRejected, PairJob, render_pair
from .rir import SyntheticRirSource
from .sources import NoiseSource, RirSource
from .speech import SpeechRequest, SpeechSource
from .store import CLEAN_DIR, DEGRADED_DIR, atomic_dataset_dir_async

__all__ = [
    "Dataset",
    "DatasetSpec",
    "ProgressCallback",
    "Sources",
    "generate_dataset",
    "next_voice",
    "offline_sources",
]

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    competition: Competition
    count: int
    seed: int
    out: Path
    sentences: int = SENTENCES_PER_PROMPT
    """Sentences per prompt (the reference uses 4; tests use fewer for short clips)."""
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.sentences < 1:
            raise ValueError("sentences must be >= 1")


@dataclass(frozen=True, slots=True)
class Sources:
    speech: SpeechSource
    noise: NoiseSource | None = None
    rir: RirSource | None = None

    async def aclose(self) -> None:
        """Close the sources that hold connections (those with an ``aclose`` method)."""
        for source in (self.speech, self.noise, self.rir):
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()


@dataclass(frozen=True, slots=True)
class Dataset:
    path: Path
    manifest: Manifest
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def clean_dir(self) -> Path:
        return self.path / CLEAN_DIR

    @property
    def degraded_dir(self) -> Path:
        return self.path / DEGRADED_DIR


def next_voice(voices: Sequence[str], voice: str, redraw: int) -> str:
    """The voice of redraw number ``redraw`` (1, 2, ...): the ``redraw``-th voice after
    ``voice`` in the source's (stable) voice order, wrapping around."""
    order = list(voices)
    start = order.index(voice) if voice in order else 0
    return order[(start + redraw) % len(order)]


def offline_sources(pool: ScoringPool) -> Sources:
    """espeak-ng speech, synthetic noise and synthetic RIRs: no account, no download."""
    return Sources(EspeakSource(pool), SyntheticNoiseSource(), SyntheticRirSource())


async def generate_dataset(
    spec: DatasetSpec,
    *,
    pool: ScoringPool | None = None,
    sources: Sources | None = None,
    progress: ProgressCallback | None = None,
    max_inflight: int | None = None,
) -> Dataset:
    """Generate ``spec.count`` clean/degraded pairs under ``spec.out``.

    ``pool`` defaults to a new ``ScoringPool`` (closed on return); ``sources`` default to the
    offline ones. ``max_inflight`` bounds the files in progress at once (default: twice the
    pool's workers, at least 4) so fast speech sources cannot pile clips up in memory.
    """
    if pool is None:
        async with ScoringPool() as own:
            return await generate_dataset(
                spec, pool=own, sources=sources, progress=progress, max_inflight=max_inflight
            )
    if not spec.overwrite and await asyncio.to_thread(spec.out.exists):
        raise InputError(f"{spec.out} already exists (pass overwrite to replace it)")
    src = sources if sources is not None else offline_sources(pool)
    comp = spec.competition
    needs = src.noise if comp.task is Task.DENOISING else src.rir
    if needs is None:
        raise DatasetError(
            f"{comp.name} needs a {'noise' if comp.task is Task.DENOISING else 'RIR'} source"
        )
    started = time.monotonic()
    await needs.prepare()
    try:
        voices = await src.speech.voices()
    except SpeechSourceError as exc:
        if isinstance(exc, SourceUnavailableError):
            raise
        raise SourceUnavailableError(
            f"{src.speech.name}: cannot list voices: {exc}", source=src.speech.name
        ) from exc
    jobs = plan_dataset(
        comp,
        spec.seed,
        spec.count,
        voices=voices,
        speed_range=src.speech.speed_range,
        noise=src.noise,
        rir=src.rir,
        sentences=spec.sentences,
    )
    source_names = {"speech": src.speech.name}
    if comp.task is Task.DENOISING and src.noise is not None:
        source_names["noise"] = src.noise.name
    elif src.rir is not None:
        source_names["rir"] = src.rir.name
    log.info(
        "dataset.start", competition=comp.name, count=spec.count, seed=spec.seed, **source_names
    )
    limit = asyncio.Semaphore(max_inflight or max(4, 2 * pool.workers))
    entries: list[FileEntry | None] = [None] * len(jobs)
    done = 0
    if progress:
        progress(0, len(jobs))

    async with atomic_dataset_dir_async(spec.out, overwrite=spec.overwrite) as tmp:

        async def render(i: int, job: PairJob) -> FileEntry:
            reasons: list[str] = []
            for redraw in range(MAX_REDRAWS + 1):
                if redraw:
                    job = replace(job, voice=next_voice(voices, jobs[i].voice, redraw))
                    log.warning("dataset.redraw", name=job.name, voice=job.voice, why=reasons[-1])
                try:
                    clip = await src.speech.synthesize(
                        SpeechRequest(i, job.text, job.voice, job.speed)
                    )
                    return await pool.run(
                        render_pair, job, clip.samples, clip.sample_rate, str(tmp), tuple(reasons)
                    )
                except SpeechAccountError:
                    raise
                except (SpeechSourceError, ClipRejected) as exc:
                    reasons.append(f"voice {job.voice}: {exc}")
                except (ValueError, RuntimeError, OSError) as exc:
                    raise DatasetError(f"{job.name}: {exc}") from exc
            raise SourceUnavailableError(
                f"{src.speech.name}: {job.name}: all {MAX_REDRAWS + 1} draws failed "
                f"({'; '.join(reasons)})",
                source=src.speech.name,
            )

        async def one(i: int, job: PairJob) -> None:
            nonlocal done
            async with limit:
                entries[i] = await render(i, job)
            done += 1
            log.debug("dataset.file", name=job.name, done=done, total=len(jobs))
            if done * 10 // len(jobs) != (done - 1) * 10 // len(jobs):
                log.info("dataset.progress", competition=comp.name, done=done, total=len(jobs))
            if progress:
                progress(done, len(jobs))

        try:
            async with asyncio.TaskGroup() as tg:
                for i, job in enumerate(jobs):
                    tg.create_task(one(i, job))
        except ExceptionGroup as group:
            raise _most_relevant(group) from None
        manifest = Manifest(
            competition=comp.name,
            sample_rate=comp.sample_rate,
            task=comp.task.value,
            seed=spec.seed,
            count=spec.count,
            sources=source_names,
            files=tuple(e for e in entries if e is not None),
        )
        if len(manifest.files) != spec.count:  # pragma: no cover - TaskGroup guarantees this
            raise DatasetError(f"only {len(manifest.files)} of {spec.count} files were made")
        await asyncio.to_thread((tmp / MANIFEST_NAME).write_bytes, manifest.to_json())
    elapsed = time.monotonic() - started
    log.info("dataset.done", competition=comp.name, path=str(spec.out), seconds=round(elapsed, 2))
    return Dataset(Path(spec.out), manifest, {"total_s": elapsed})


def _most_relevant(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed task group: an account error (quota, bad key) first,
    then any dataset error, then whatever came first."""
    leaves = list(_leaves(group))
    for kind in (SpeechAccountError, DatasetError):
        for exc in leaves:
            if isinstance(exc, kind):
                return exc
    return leaves[0]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
