"""The benchmark runner: build → start → status → prepare → upload → enhance → download → reset
→ output names → score, for one model, with a timing and (on failure) a reason for every step.

Concurrency: at most ``max_concurrent_builds`` builds at once across engines; each engine has a
fixed set of run slots (one per GPU, or ``run_slots`` without GPUs) and a model holds a slot only
while its container runs. Scoring happens after the slot is released, so when several
``benchmark`` calls run together (``benchmark_many``), one model is scored while the next runs.

Several engines: a model goes to the engine in use with the most free slots (``pick_engine``,
pure). An ``EngineError`` that is not the model's (the engine's socket gone, an API deadline) takes
that engine out of use and the model is benchmarked again, from its build, on another engine in
use; the failed attempt is kept in ``result.engine_failures``. An engine out of use is pinged
(``ContainerEngine.ping``) at most every ``probe_interval_s`` when a model is placed, and used
again once it answers. With no engine in use, ``benchmark`` raises ``EngineError`` (the
validator runs the model again later); ``benchmark_many`` records it as the model's
``engine_error`` step instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from .._exceptions import ScoringError, WorkerCrashedError
from ..audio.metrics import DatasetScore
from ..competitions import Competition
from .client import ClientLimits, ModelClient, StepFailed, StepTimeouts
from .engine import (
    BuildFailed,
    BuildRequest,
    ContainerEngine,
    EngineError,
    GpuRequest,
    RunningModel,
    RunRequest,
    StartFailed,
    image_tag,
    project_labels,
)

if TYPE_CHECKING:
    from ..audio.dataset import Dataset

__all__ = [
    "BenchmarkResult",
    "BenchmarkRunner",
    "DatasetDirs",
    "EngineLoad",
    "ModelUnderTest",
    "NoEngineError",
    "RunnerConfig",
    "Scorer",
    "StepResult",
    "pick_engine",
]

log = structlog.get_logger(__name__)
_DEATH_GRACE_S = 3.0


class Scorer(Protocol):
    """What the runner needs to score an enhanced directory: ``audio.pool.ScoringPool``."""

    async def score(
        self, competition: Competition, clean: Path, enhanced: Path, degraded: Path, /
    ) -> DatasetScore: ...


@dataclass(frozen=True, slots=True)
class ModelUnderTest:
    """A checked model tree (``fetch_model`` / ``inspect_repo`` already ran on it)."""

    label: str
    path: Path
    content_hash: str
    competition: Competition
    hotkey: str = "local"
    keep_sample: Path | None = None
    """Where to keep the model's first enhanced file once it is scored (the epoch report's
    before/after spectrogram); None keeps nothing."""


@dataclass(frozen=True, slots=True)
class DatasetDirs:
    """``clean/`` references and ``degraded/`` inputs with the same ``*.wav`` names."""

    clean: Path
    degraded: Path

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetDirs:
        """The directories of a generated dataset (``audio.dataset.generate_dataset``)."""
        return cls(clean=dataset.clean_dir, degraded=dataset.degraded_dir)


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    seconds: float
    ok: bool
    reason: str = ""
    detail: str = ""


@dataclass(slots=True)
class BenchmarkResult:
    model: str
    competition: str
    hotkey: str
    content_hash: str
    engine: str = ""
    image_id: str = ""
    steps: list[StepResult] = field(default_factory=list)
    build_log: str = ""
    container_log: str = ""
    metrics: DatasetScore | None = None
    engine_failures: list[StepResult] = field(default_factory=list)
    """Attempts an engine failed before this one (``engine <name>`` steps, ``engine_failed``):
    the model was moved to another engine, never blamed."""

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    @property
    def passed(self) -> bool:
        return self.failed is None and self.metrics is not None

    def unscored_files(self) -> dict[str, str]:
        """Output files some metric could not score (they score its floor): name -> reason."""
        if self.metrics is None:
            return {}
        out: dict[str, str] = {}
        for metric, r in self.metrics.metrics.items():
            for name, reason in r.failed.items():
                out.setdefault(name, f"{metric.value}: {reason}")
        return out

    def timings(self) -> dict[str, float]:
        return {s.step: round(s.seconds, 3) for s in self.steps}

    def to_dict(self) -> dict[str, Any]:
        failed = self.failed
        return {
            "model": self.model,
            "competition": self.competition,
            "hotkey": self.hotkey,
            "content_hash": self.content_hash,
            "engine": self.engine,
            "image_id": self.image_id,
            "passed": self.passed,
            "failed_step": failed.step if failed else None,
            "reason": failed.reason if failed else None,
            "detail": failed.detail if failed else None,
            "steps": [
                {"step": s.step, "seconds": round(s.seconds, 3), "ok": s.ok, "reason": s.reason}
                for s in self.steps
            ],
            "metrics": self.metrics.to_dict() if self.metrics is not None else None,
            "engine_failures": [
                {"step": s.step, "seconds": round(s.seconds, 3), "detail": s.detail}
                for s in self.engine_failures
            ],
            "unscored_files": self.unscored_files(),
            "build_log": self.build_log,
            "container_log": self.container_log,
        }


class _Failed(Exception):
    pass


class _EngineFailed(Exception):
    """The engine failed a step (carried past the model's own error handling)."""

    def __init__(self, error: EngineError) -> None:
        self.error = error


class NoEngineError(EngineError):
    """No engine in use is left to benchmark a model on; ``failures``: the attempts the
    engines failed (one ``engine <name>`` step each)."""

    def __init__(self, message: str, failures: list[StepResult]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    build_timeout_s: float = 900.0
    max_concurrent_builds: int = 2
    timeouts: StepTimeouts = field(default_factory=StepTimeouts)
    enhance_factor_48k: float = 1.75
    client: ClientLimits = field(default_factory=ClientLimits)
    owner: str = "validator"
    keep_images: bool = False
    probe_interval_s: float = 5.0
    """How often an engine out of use is pinged (when a model is placed) to use it again."""
    probe_timeout_s: float = 5.0


@dataclass(slots=True)
class _EngineState:
    engine: ContainerEngine
    slots: asyncio.Queue[GpuRequest | None]
    size: int
    assigned: int = 0
    down: str | None = None
    """Why the engine is out of use (None: in use)."""
    probed_at: float = 0.0
    probing: bool = False


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """What ``pick_engine`` sees of one engine."""

    name: str
    slots: int
    assigned: int
    up: bool


def pick_engine(engines: Sequence[EngineLoad], exclude: frozenset[str] = frozenset()) -> int | None:
    """The index of the engine a new model goes to: of the engines in use and not in
    ``exclude``, the one with the most free slots (slots - models assigned, which may be
    negative when models queue); ties go to the earlier engine. None: no engine qualifies."""
    best: int | None = None
    for i, e in enumerate(engines):
        if not e.up or e.name in exclude:
            continue
        if best is None or e.slots - e.assigned > engines[best].slots - engines[best].assigned:
            best = i
    return best


class BenchmarkRunner:
    """Benchmarks models on one or more engines. ``engines`` pairs each (opened) engine with
    its run slots: a ``GpuRequest`` per GPU, or ``None`` per CPU-only slot."""

    def __init__(
        self,
        *,
        engines: Sequence[tuple[ContainerEngine, Sequence[GpuRequest | None]]],
        pool: Scorer,
        work_dir: Path,
        config: RunnerConfig | None = None,
    ) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        self._engines: list[_EngineState] = []
        for engine, slots in engines:
            if not slots:
                raise ValueError(f"engine {engine.name} has no run slots")
            if any(e.engine.name == engine.name for e in self._engines):
                raise ValueError(f"two engines are named {engine.name}")
            queue: asyncio.Queue[GpuRequest | None] = asyncio.Queue()
            for slot in slots:
                queue.put_nowait(slot)
            self._engines.append(_EngineState(engine, queue, len(slots)))
        self._pool = pool
        self._work = work_dir
        self.config = config or RunnerConfig()
        self._builds = asyncio.Semaphore(self.config.max_concurrent_builds)
        self._cleanups: set[asyncio.Future[Any]] = set()

    async def _cleanup(self, aw: Awaitable[Any]) -> None:
        """Cleanup that a cancellation cannot stop half-way: it runs on as a task of its own
        (``drain`` waits for it before the engines close)."""
        task = asyncio.ensure_future(aw)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)

    async def drain(self, timeout_s: float = 60.0) -> None:
        """Wait for the cleanup of cancelled benchmarks (call before closing the engines: a
        removal after the engine's session closed fails and leaves the container behind)."""
        if self._cleanups:
            done, _ = await asyncio.wait(set(self._cleanups), timeout=timeout_s)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("benchmark.cleanup_failed", error=repr(task.exception()))

    async def benchmark_many(
        self, models: Sequence[ModelUnderTest], dataset: DatasetDirs
    ) -> list[BenchmarkResult]:
        """Benchmark ``models`` concurrently; one result per model, in order. A model's
        failure (whatever raised, no engine in use included) is its own failed step; only
        cancellation ends the batch."""
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._benchmark_or_record(m, dataset)) for m in models]
        return [t.result() for t in tasks]

    async def _benchmark_or_record(
        self, model: ModelUnderTest, dataset: DatasetDirs
    ) -> BenchmarkResult:
        try:
            return await self.benchmark(model, dataset)
        except NoEngineError as exc:
            result = _result_of(model, "")
            result.engine_failures = exc.failures
            result.steps.append(StepResult("engine", 0.0, False, "engine_error", str(exc)[:1000]))
            return result

    def loads(self) -> list[EngineLoad]:
        return [
            EngineLoad(e.engine.name, e.size, e.assigned, e.down is None) for e in self._engines
        ]

    async def benchmark(self, model: ModelUnderTest, dataset: DatasetDirs) -> BenchmarkResult:
        """Benchmark one model. Never raises for the model's failure (the result's failed
        step says what and why); an engine's failure moves the model to another engine in
        use. Raises ``NoEngineError`` (an ``EngineError``) when no engine is left to try;
        cancellation propagates."""
        failures: list[StepResult] = []
        tried: set[str] = set()
        while True:
            await self._probe()
            index = pick_engine(self.loads(), frozenset(tried))
            if index is None:
                down = "; ".join(f"{e.engine.name}: {e.down}" for e in self._engines if e.down)
                raise NoEngineError(
                    f"no container engine to benchmark {model.label} on"
                    + (f" (out of use: {down})" if down else ""),
                    failures,
                )
            state = self._engines[index]
            start = time.monotonic()
            try:
                result = await self._attempt(state, model, dataset)
            except EngineError as exc:
                tried.add(state.engine.name)
                failures.append(
                    StepResult(
                        f"engine {state.engine.name}",
                        time.monotonic() - start,
                        False,
                        "engine_failed",
                        f"{exc}"[:1000],
                    )
                )
                log.warning(
                    "benchmark.engine_failed",
                    model=model.label,
                    engine=state.engine.name,
                    error=str(exc),
                    hint="the model is benchmarked again on another engine in use",
                )
                continue
            result.engine_failures = failures
            return result

    def _take_out(self, state: _EngineState, exc: EngineError) -> None:
        if state.down is None:
            log.error("sandbox.engine.out_of_use", engine=state.engine.name, error=str(exc))
        state.down = str(exc)[:500]
        state.probed_at = time.monotonic()

    async def _probe(self) -> None:
        """Ping the engines out of use whose last ping is ``probe_interval_s`` old; one that
        answers is used again."""
        now = time.monotonic()
        due = [
            e
            for e in self._engines
            if e.down is not None
            and not e.probing
            and now - e.probed_at >= self.config.probe_interval_s
        ]
        if not due:
            return
        for e in due:  # one ping at a time, per interval, however many models are being placed
            e.probed_at, e.probing = now, True

        async def ping(e: _EngineState) -> None:
            try:
                async with asyncio.timeout(self.config.probe_timeout_s):
                    await e.engine.ping()
            except (EngineError, TimeoutError) as exc:
                log.info(
                    "sandbox.engine.still_out", engine=e.engine.name, error=str(exc) or "timeout"
                )
                return
            finally:
                e.probing = False
            log.info("sandbox.engine.back", engine=e.engine.name, was=e.down)
            e.down = None

        await asyncio.gather(*(ping(e) for e in due))

    async def _attempt(
        self, state: _EngineState, model: ModelUnderTest, dataset: DatasetDirs
    ) -> BenchmarkResult:
        """One try on one engine; an ``EngineError`` that is not the model's propagates."""
        state.assigned += 1
        result = _result_of(model, state.engine.name)
        out = self._work / f"{model.competition.name.lower()}-{uuid.uuid4().hex[:12]}"
        tag = f"{image_tag(model.competition.name, model.hotkey, model.content_hash)}"
        tag += f"-{uuid.uuid4().hex[:6]}"
        log.info("benchmark.started", model=model.label, engine=state.engine.name)
        try:
            await self._build(state.engine, model, tag, result)
            enhanced = await self._run(state, model, dataset, out, result)
            metrics = await self._timed(
                result,
                "score",
                lambda: self._pool.score(
                    model.competition, dataset.clean, enhanced, dataset.degraded
                ),
            )
            result.metrics = metrics
            if model.keep_sample is not None:
                await asyncio.to_thread(_keep_first, enhanced, model.keep_sample)
        except _Failed:
            pass
        except _EngineFailed as exc:
            self._take_out(state, exc.error)  # at once: no model is placed there meanwhile
            raise exc.error from None
        except EngineError as exc:  # the engine's (a dead engine while a step was explained)
            self._take_out(state, exc)
            raise
        except Exception as exc:
            _record_crash(result, exc, "benchmark")
        finally:
            state.assigned -= 1
            try:
                if not self.config.keep_images:  # also after a cancelled build (404 is fine)
                    await self._cleanup(state.engine.remove_image(tag))
                await self._cleanup(asyncio.to_thread(shutil.rmtree, out, True))
            except Exception as exc:
                log.error("benchmark.cleanup_failed", model=model.label, error=str(exc))
        failed = result.failed
        log.info(
            "benchmark.finished",
            model=model.label,
            engine=state.engine.name,
            passed=result.passed,
            failed_step=failed.step if failed else None,
            reason=failed.reason if failed else None,
            timings=result.timings(),
        )
        return result

    async def _timed(
        self, result: BenchmarkResult, step: str, fn: Callable[[], Awaitable[Any]]
    ) -> Any:
        start = time.monotonic()
        try:
            value = await fn()
        except StepFailed as exc:
            result.steps.append(
                StepResult(step, time.monotonic() - start, False, exc.reason, exc.detail)
            )
            raise _Failed from None
        except (BuildFailed, StartFailed) as exc:
            result.steps.append(
                StepResult(step, time.monotonic() - start, False, exc.reason, exc.detail)
            )
            raise _Failed from None
        except ScoringError as exc:
            # Scoring this model's outputs failed (a pool worker died on them, or a reference
            # file is unusable): a failed step of this model, never an error that cancels the
            # other models of a benchmark_many batch.
            reason = "scoring_crashed" if isinstance(exc, WorkerCrashedError) else "scoring_error"
            result.steps.append(StepResult(step, time.monotonic() - start, False, reason, str(exc)))
            log.error("benchmark.scoring_failed", model=result.model, reason=reason, error=str(exc))
            raise _Failed from None
        except (_Failed, _EngineFailed):
            raise
        except EngineError as exc:
            # the engine failed (socket gone, API deadline), not the model: tried elsewhere
            raise _EngineFailed(exc) from None
        except Exception as exc:
            _record_crash(result, exc, step, time.monotonic() - start)
            raise _Failed from None
        result.steps.append(StepResult(step, time.monotonic() - start, True))
        return value

    async def _build(
        self, engine: ContainerEngine, model: ModelUnderTest, tag: str, result: BenchmarkResult
    ) -> None:
        labels = project_labels(
            self.config.owner, competition=model.competition.name, hotkey=model.hotkey
        )
        request = BuildRequest(model.path, tag, labels, self.config.build_timeout_s)

        async def build() -> None:
            async with self._builds:
                try:
                    built = await engine.build(request)
                except BuildFailed as exc:
                    result.build_log = exc.log
                    raise
            result.image_id, result.build_log = built.image_id, built.log

        await self._timed(result, "build", build)

    async def _run(
        self,
        state: _EngineState,
        model: ModelUnderTest,
        dataset: DatasetDirs,
        out: Path,
        result: BenchmarkResult,
    ) -> Path:
        inputs = await asyncio.to_thread(_wavs, dataset.degraded)
        timeouts = self.config.timeouts.for_rate(
            model.competition.sample_rate, self.config.enhance_factor_48k
        )
        gpu = await state.slots.get()
        running: RunningModel | None = None
        try:
            labels = project_labels(
                self.config.owner, competition=model.competition.name, hotkey=model.hotkey
            )

            async def start() -> RunningModel:
                return await state.engine.start(RunRequest(result.image_id, labels, gpu))

            running = await self._timed(result, "start", start)
            assert running is not None
            await asyncio.to_thread(out.mkdir, parents=True)
            async with ModelClient(
                running.base_url, timeouts=timeouts, limits=self.config.client
            ) as client:
                steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                    ("status", client.wait_ready),
                    ("prepare", client.prepare),
                    ("upload", lambda: client.upload([dataset.degraded / n for n in inputs])),
                    ("enhance", client.enhance),
                    ("download", lambda: client.download(out, inputs=len(inputs))),
                    ("reset", client.reset),
                ]
                for name, fn in steps:
                    try:
                        await self._timed(result, name, fn)
                    except _Failed:
                        await self._explain(state.engine, running, result)
                        raise
            await self._timed(result, "outputs", lambda: _check_outputs(out, inputs))
            return out
        finally:
            if running is not None:
                await self._cleanup(self._teardown(state.engine, running, result))
            state.slots.put_nowait(gpu)

    async def _explain(
        self, engine: ContainerEngine, running: RunningModel, result: BenchmarkResult
    ) -> None:
        """A step failed: if the container is gone, say so (exit code, OOM) in the reason.
        A dropped connection usually means the process just died: the engine may take a
        moment to notice, so the state is polled for up to ``_DEATH_GRACE_S``."""
        last = result.steps[-1]
        deadline = time.monotonic() + (_DEATH_GRACE_S if last.reason == "connection" else 0.0)
        st = await engine.state(running)
        while st.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the engine's state is polled; there is no event to wait on
            st = await engine.state(running)
        if st.running:
            return
        reason = "oom_killed" if st.oom_killed else "container_exited"
        result.steps[-1] = StepResult(
            last.step,
            last.seconds,
            False,
            reason,
            f"{st.describe()} ({last.reason}: {last.detail})",
        )

    async def _teardown(
        self, engine: ContainerEngine, running: RunningModel, result: BenchmarkResult
    ) -> None:
        result.container_log = await engine.logs(running)
        await engine.stop(running)


def _result_of(model: ModelUnderTest, engine: str) -> BenchmarkResult:
    return BenchmarkResult(
        model=model.label,
        competition=model.competition.name,
        hotkey=model.hotkey,
        content_hash=model.content_hash,
        engine=engine,
    )


def _record_crash(result: BenchmarkResult, exc: Exception, step: str, seconds: float = 0.0) -> None:
    """An unexpected error while benchmarking one model: that model's failed step."""
    if step == "benchmark" and result.steps and not result.steps[-1].ok:
        return  # already recorded by _timed
    if step == "benchmark" and result.steps:
        step = f"after {result.steps[-1].step}"
    reason = "engine_error" if isinstance(exc, EngineError) else "internal_error"
    detail = f"{type(exc).__name__}: {exc}"[:1000]
    result.steps.append(StepResult(step, seconds, False, reason, detail))
    log.error("benchmark.step_crashed", model=result.model, step=step, error=detail)


def _wavs(directory: Path) -> list[str]:
    names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(".wav") and e.is_file())
    if not names:
        raise ValueError(f"no *.wav inputs in {directory}")
    return names


async def _check_outputs(out: Path, inputs: Sequence[str]) -> None:
    """The name-set gate (models.md §5.1): the top-level ``*.wav`` names equal the inputs."""
    got = set(await asyncio.to_thread(_wavs_or_empty, out))
    want = set(inputs)
    if got != want:
        missing, extra = sorted(want - got), sorted(got - want)
        raise StepFailed(
            "outputs", "wrong_outputs", f"missing {missing[:10]}, unexpected {extra[:10]}"
        )


def _wavs_or_empty(directory: Path) -> list[str]:
    return [e.name for e in os.scandir(directory) if e.name.endswith(".wav") and e.is_file()]


def _keep_first(enhanced: Path, dest: Path) -> None:
    """Copy the first enhanced file (by name) to ``dest``; a failure only loses the sample."""
    try:
        first = min((p for p in enhanced.iterdir() if p.suffix.lower() == ".wav"), default=None)
        if first is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, dest)
    except OSError as exc:
        log.warning("benchmark.sample_not_kept", dest=str(dest), error=str(exc))
