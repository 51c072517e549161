"""The benchmark scheduler: every accepted model of the epoch, fetched once, benchmarked once.

Order: previous winners first, then the earliest commitment, then the lowest uid (baselines go
first of all). At most ``run slots + build slots`` models are in flight, so one is built while
others run; the runner owns the finer limits. Identical content in one competition is benchmarked
once and its result repeated for the later entrant (``shared_from``; the judge then drops the
copy). No new run starts within ``stop_margin_blocks`` of the epoch end. Each result is committed
to the store, with its Feedback queued, the moment it exists; a store write that fails (disk full)
is retried until it succeeds, so a finished benchmark is never lost while the daemon runs. A run
the engine failed (the engine's socket went away: our fault, not the model's) stores no result: it
is run again with back-off once the engine answers, until the stop margin, when the candidate goes
back to ``accepted`` (reason ``engine_unavailable``) without a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import TaskGroup

from ..audio.dataset.store import CLEAN_DIR, DEGRADED_DIR
from ..competitions import get_competition
from ..runtime import Backoff
from ..sandbox import ModelRef, ModelSourceError, RepoLimits, inspect_repo
from ..sandbox.engine import EngineError
from ..sandbox.runner import BenchmarkResult, DatasetDirs, ModelUnderTest
from ._context import Services
from ._epochs import run_order
from ._messages import result_feedback
from ._store import CandidateRow, EpochRow, ResultRow, StoreError
from .settings import BaselineModel

__all__ = ["Scheduler", "baseline_hotkey"]

log = structlog.get_logger(__name__)


def baseline_hotkey(b: BaselineModel) -> str:
    return f"baseline:{b.name()}"


@dataclass
class _Shared:
    """Content being (or already) benchmarked in one epoch and competition."""

    done: anyio.Event = field(default_factory=anyio.Event)
    result: ResultRow | None = None


class Scheduler:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._active: set[tuple[int, str, str]] = set()
        self._content: dict[tuple[int, str, str], _Shared] = {}
        s = svc.settings.sandbox
        slots = sum(len(e.gpus) or e.run_slots for e in s.engines)
        self.capacity = slots + s.max_concurrent_builds

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Start models as capacity frees up; runs in flight belong to this task's group."""
        state = self.svc.state
        seen = -1
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                seen = await state.work.wait_newer(seen, 30.0)
                state.board.tick("scheduler")
                await self._start_ready(tg)

    async def _start_ready(self, tg: TaskGroup) -> None:
        svc, state = self.svc, self.svc.state
        epoch, head = state.epoch, state.head
        if epoch is None or head is None or epoch.status != "ready":
            return
        if not state.clock.may_start_run(epoch.number, head.number):
            return
        await self._add_baselines(epoch)
        pending = [
            c
            for c in await svc.store.candidates(epoch.number, "accepted")
            if (epoch.number, c.hotkey, c.competition) not in self._active
        ]
        state.metrics.queue.labels("benchmark").set(len(pending))
        winners = await self._previous_winners()
        for c in run_order(pending, winners):
            if len(self._active) >= self.capacity:
                break
            key = (epoch.number, c.hotkey, c.competition)
            self._active.add(key)
            await svc.store.set_candidate(epoch.number, c.hotkey, c.competition, state="running")
            state.running[(c.hotkey, c.competition)] = {
                "epoch": epoch.number,
                "uid": c.uid,
                "step": "fetch",
                "since": state.now(),
            }
            tg.start_soon(self._run_one, epoch, c, name=f"benchmark {c.competition} {c.hotkey}")

    async def _previous_winners(self) -> set[str]:
        latest = await self.svc.store.judgement()
        if latest is None:
            return set()
        out = orjson.loads(latest[2])
        return {w["hotkey"] for ws in out.get("winners", {}).values() for w in ws.values()}

    async def _add_baselines(self, epoch: EpochRow) -> None:
        for b in self.svc.settings.baseline.models:
            if b.competition not in self.svc.state.competitions:
                continue
            ns, _, name = (b.repo or "local/" + b.name()).partition("/")
            await self.svc.store.add_candidate(
                CandidateRow(
                    epoch=epoch.number,
                    hotkey=baseline_hotkey(b),
                    competition=b.competition,
                    uid=-1,
                    namespace=ns,
                    name=name,
                    revision=b.revision or "0" * 40,
                    commitment_block=-1,
                    state="accepted",
                    kind="baseline",
                    source=str(b.path or ""),
                )
            )

    async def _run_one(self, epoch: EpochRow, c: CandidateRow) -> None:
        state = self.svc.state
        key = (epoch.number, c.hotkey, c.competition)
        shared: _Shared | None = None
        try:
            row = await self._until_the_engine_answers(epoch, c)
            if row is None:
                return
            shared = self._content.get((epoch.number, c.competition, row.content_hash))
            await self._save(epoch, c, row)
        finally:
            self._active.discard(key)
            state.running.pop((c.hotkey, c.competition), None)
            if shared is not None and not shared.done.is_set():
                shared.done.set()
            state.work.bump()

    async def _until_the_engine_answers(self, epoch: EpochRow, c: CandidateRow) -> ResultRow | None:
        """The run's result; a run the engine failed is done again after a back-off (None: the
        stop margin came first; the candidate is ``accepted`` again, with no result)."""
        svc, state = self.svc, self.svc.state
        d = svc.settings.daemon
        backoff = Backoff(d.retry_backoff_s, d.retry_backoff_max_s)
        while True:
            try:
                row = await self._fetch_and_benchmark(epoch, c)
            except EngineError as exc:
                delay = backoff.next()
                state.board.failed("engines", exc)
                log.error(
                    "benchmark.engine_unavailable",
                    epoch=epoch.number,
                    hotkey=c.hotkey,
                    competition=c.competition,
                    error=str(exc),
                    retry_in_s=delay,
                    hint="the run is done again when the engine answers",
                )
            else:
                if backoff.failures:
                    state.board.tick("engines")
                    log.info("benchmark.engine_back", hotkey=c.hotkey, after=backoff.failures)
                return row
            await anyio.sleep(delay)
            head = state.head
            if head is None or not state.clock.may_start_run(epoch.number, head.number):
                await svc.store.set_candidate(
                    epoch.number,
                    c.hotkey,
                    c.competition,
                    state="accepted",
                    reason="engine_unavailable",
                )
                log.warning(
                    "benchmark.not_rerun",
                    epoch=epoch.number,
                    hotkey=c.hotkey,
                    reason="the engine was unavailable until the stop margin",
                )
                return None
            state.running[(c.hotkey, c.competition)]["step"] = "fetch"

    async def _fetch_and_benchmark(self, epoch: EpochRow, c: CandidateRow) -> ResultRow:
        svc, state = self.svc, self.svc.state
        t0 = anyio.current_time()
        try:
            path, content_hash, ckpts = await self._fetch(epoch, c)
        except ModelSourceError as exc:
            log.info("benchmark.fetch_failed", hotkey=c.hotkey, reason=exc.reason)
            step = {"step": "fetch", "seconds": round(anyio.current_time() - t0, 3), "ok": False}
            return self._row(c, "", False, "fetch", exc.reason, exc.detail, [step], None)
        await svc.store.set_candidate(
            epoch.number,
            c.hotkey,
            c.competition,
            state="running",
            content_hash=content_hash,
            ckpt_hashes=ckpts,
        )
        fetch_step = {"step": "fetch", "seconds": round(anyio.current_time() - t0, 3), "ok": True}
        slot = (epoch.number, c.competition, content_hash)
        earlier = self._content.get(slot)
        if earlier is None:
            mine = self._content[slot] = _Shared()
        else:
            await earlier.done.wait()
            if earlier.result is not None and earlier.result.hotkey != c.hotkey:
                r = earlier.result
                log.info("benchmark.identical_content", hotkey=c.hotkey, same_as=r.hotkey)
                return self._row(
                    c,
                    content_hash,
                    r.passed,
                    r.failed_step,
                    r.reason,
                    r.detail,
                    r.steps,
                    r.metrics,
                    engine=r.engine,
                    shared_from=r.hotkey,
                )
            mine = self._content[slot] = _Shared()
        state.running[(c.hotkey, c.competition)]["step"] = "benchmark"
        dataset = Path(epoch.datasets[c.competition])
        try:
            bench = await svc.runner.benchmark(
                ModelUnderTest(
                    label=f"{c.namespace}/{c.name}@{c.revision[:12]}",
                    path=path,
                    content_hash=content_hash,
                    competition=get_competition(c.competition),
                    hotkey=c.hotkey,
                    # one enhanced file for the epoch report (cli/report.py reads SAMPLES_DIR)
                    keep_sample=svc.data_dir
                    / "samples"
                    / str(epoch.number)
                    / c.competition
                    / f"{content_hash}.wav",
                ),
                DatasetDirs(clean=dataset / CLEAN_DIR, degraded=dataset / DEGRADED_DIR),
            )
        except BaseException:
            # No result for this content: a copy waiting on it runs itself (a re-run of this
            # model starts afresh instead of waiting on its own unfinished attempt).
            if self._content.get(slot) is mine:
                del self._content[slot]
            mine.done.set()
            raise
        return self._from_bench(c, bench, fetch_step)

    async def _fetch(self, epoch: EpochRow, c: CandidateRow) -> tuple[Path, str, list[str]]:
        if c.kind == "baseline" and c.source:
            m = self.svc.settings.models
            limits = RepoLimits(m.max_total_bytes, m.max_files, m.max_file_bytes)
            digest = await inspect_repo(Path(c.source), limits)
            return Path(c.source), digest.content_hash, digest.checkpoint_hashes
        ref = ModelRef(c.namespace, c.name, c.revision)
        fetched = await self.svc.models.get(ref, epoch=epoch.number)
        return fetched.path, fetched.digest.content_hash, fetched.digest.checkpoint_hashes

    def _row(
        self,
        c: CandidateRow,
        content_hash: str,
        passed: bool,
        failed_step: str | None,
        reason: str | None,
        detail: str | None,
        steps: list[dict[str, Any]],
        metrics: dict[str, Any] | None,
        *,
        engine: str = "",
        shared_from: str | None = None,
    ) -> ResultRow:
        return ResultRow(
            epoch=c.epoch,
            hotkey=c.hotkey,
            competition=c.competition,
            uid=c.uid,
            kind=c.kind,
            content_hash=content_hash,
            passed=passed,
            failed_step=failed_step,
            reason=reason,
            detail=detail,
            steps=steps,
            metrics=metrics,
            engine=engine,
            shared_from=shared_from,
        )

    def _from_bench(
        self, c: CandidateRow, b: BenchmarkResult, fetch_step: dict[str, Any]
    ) -> ResultRow:
        failed = b.failed
        steps = (
            [fetch_step]
            + [  # attempts an engine failed: the model was moved, not blamed
                {"step": s.step, "seconds": round(s.seconds, 3), "ok": True, "reason": s.reason}
                for s in b.engine_failures
            ]
            + [
                {"step": s.step, "seconds": round(s.seconds, 3), "ok": s.ok, "reason": s.reason}
                for s in b.steps
            ]
        )
        for s in b.steps:
            self.svc.state.metrics.steps.labels(s.step).observe(s.seconds)
        return self._row(
            c,
            b.content_hash,
            b.passed,
            failed.step if failed else None,
            failed.reason if failed else None,
            failed.detail if failed else None,
            steps,
            b.metrics.to_dict() if b.metrics is not None else None,
            engine=b.engine,
        )

    async def _save(self, epoch: EpochRow, c: CandidateRow, row: ResultRow) -> None:
        svc = self.svc
        f = svc.settings.feedback
        outbox = []
        if c.kind == "miner":
            outbox.append(
                result_feedback(
                    c, row, seed=epoch.seed, expires_at=svc.state.now() + f.give_up_after_s
                )
            )
        d = svc.settings.daemon
        backoff = Backoff(d.retry_backoff_s, d.retry_backoff_max_s)
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    await svc.store.save_result(row, outbox)
                break
            except StoreError as exc:
                delay = backoff.next()
                log.error(
                    "result.store_failed",
                    hotkey=c.hotkey,
                    competition=c.competition,
                    error=str(exc),
                    retry_in_s=delay,
                    hint="the result is kept in memory and written when the disk accepts it",
                )
                await anyio.sleep(delay)
        shared = self._content.get((epoch.number, c.competition, row.content_hash))
        if shared is not None and row.shared_from is None and shared.result is None:
            shared.result = row
        svc.state.metrics.results.labels("passed" if row.passed else "failed").inc()
        if outbox:
            svc.state.outbox.bump()
        scores = {k: round(v, 4) for k, v in row.averages().items()}
        log.info(
            "result.stored",
            epoch=epoch.number,
            hotkey=c.hotkey,
            competition=c.competition,
            passed=row.passed,
            failed_step=row.failed_step,
            reason=row.reason,
            averages=scores or None,
            shared_from=row.shared_from,
        )
