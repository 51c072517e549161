from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pool_jobs as jobs
import pytest

from soundsright_async import PoolClosedError, WorkerCrashedError
from soundsright_async.audio.metrics import score_dataset
from soundsright_async.audio.pool import ScoringPool, default_workers
from soundsright_async.audio.testsignals import write_scoring_fixture
from soundsright_async.competitions import get_competition


async def test_run_returns_values_and_reuses_workers() -> None:
    async with ScoringPool(workers=1) as pool:
        assert await pool.run(jobs.add, 2, 3) == 5
        assert await pool.run(jobs.add, a=4, b=5) == 9
        first, second = await pool.run(jobs.pid), await pool.run(jobs.pid)
        assert first == second != os.getpid()


def test_default_workers_is_the_cpu_affinity() -> None:
    assert default_workers() == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ScoringPool(workers=0)


async def test_job_exceptions_propagate_with_their_type() -> None:
    async with ScoringPool(workers=1) as pool:
        with pytest.raises(ValueError, match="bad input") as info:
            await pool.run(jobs.raise_value_error, "bad input")
        notes = info.value.__notes__
        assert any("raised in pool worker running raise_value_error" in n for n in notes)
        with pytest.raises(RuntimeError, match="_Unpicklable: 1-2"):
            await pool.run(jobs.raise_unpicklable)
        assert await pool.run(jobs.add, 1, 1) == 2  # the worker survived both


async def test_bounded_concurrency() -> None:
    async with ScoringPool(workers=2) as pool:
        spans = await asyncio.gather(*(pool.run(jobs.timed_sleep, 0.4) for _ in range(4)))
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    assert len({p for _, _, p in spans}) == 2


@pytest.mark.parametrize(
    ("job", "args", "exitcode"),
    [(jobs.die_by_signal, (), -9), (jobs.exit_hard, (3,), 3)],
)
async def test_worker_death_is_a_clear_error_and_the_pool_recovers(
    job: object, args: tuple[object, ...], exitcode: int
) -> None:
    async with ScoringPool(workers=2) as pool:
        other = asyncio.ensure_future(pool.run(jobs.timed_sleep, 0.5))
        with pytest.raises(WorkerCrashedError) as info:
            await asyncio.wait_for(pool.run(job, *args), timeout=10)  # type: ignore[arg-type]
        assert info.value.exitcode == exitcode
        assert info.value.job == job.__qualname__  # type: ignore[attr-defined]
        assert "while running" in str(info.value)
        # the job on the other worker is unaffected, and later jobs run
        assert len(await other) == 3
        assert await pool.run(jobs.add, 20, 22) == 42


async def test_cancelling_a_queued_job_stops_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with ScoringPool(workers=1) as pool:
        busy = asyncio.ensure_future(pool.run(jobs.timed_sleep, 0.6))
        await asyncio.sleep(0.1)
        queued = asyncio.ensure_future(pool.run(jobs.touch_after, str(marker), 0.0))
        await asyncio.sleep(0.1)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        await busy
        assert await pool.run(jobs.add, 1, 2) == 3
    assert not marker.exists()


async def test_cancelling_a_running_job_kills_its_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with ScoringPool(workers=1) as pool:
        task = asyncio.ensure_future(pool.run(jobs.write_pid_and_sleep, str(pid_file), 60.0))
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                break
            await asyncio.sleep(0.05)
        pid = int(pid_file.read_text())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if not _alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not _alive(pid)
        assert await pool.run(jobs.pid) != pid  # a fresh worker serves the next job


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_closed_pool_refuses_jobs() -> None:
    pool = ScoringPool(workers=1)
    assert await pool.run(jobs.add, 1, 1) == 2
    await pool.aclose()
    assert pool.closed
    with pytest.raises(PoolClosedError, match="pool is closed; cannot run add"):
        await pool.run(jobs.add, 1, 1)
    await pool.aclose()  # idempotent


async def test_pool_score_matches_sequential_scoring(tmp_path: Path) -> None:
    comp = get_competition("DENOISING_48000HZ")
    fx = write_scoring_fixture(tmp_path, comp, files=4, seconds=1.0, seed=11)
    (fx.enhanced / "2.wav").unlink()
    seen: list[tuple[int, int]] = []
    async with ScoringPool(workers=2) as pool:
        pooled = await pool.score(
            comp, fx.clean, fx.enhanced, fx.noisy, progress=lambda d, t: seen.append((d, t))
        )
    sequential = score_dataset(comp, fx.clean, fx.enhanced, fx.noisy)
    assert pooled.to_dict() == sequential.to_dict()
    assert pooled.metrics[comp.metrics[0]].failed == {"2.wav": "missing"}
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]


async def test_workers_run_single_threaded_blas_by_default() -> None:
    async with ScoringPool(workers=1) as pool:
        assert await pool.run(jobs.blas_threads) == 1
    with pytest.raises(ValueError, match="threads_per_worker must be >= 1"):
        ScoringPool(workers=1, threads_per_worker=0)


async def test_warm_starts_every_worker_once() -> None:
    async with ScoringPool(workers=2) as pool:
        await pool.warm()
        await pool.warm()  # idempotent: no extra processes
        pids = set()
        for _ in range(3):
            spans = await asyncio.gather(*(pool.run(jobs.timed_sleep, 0.2) for _ in range(2)))
            pids |= {p for _, _, p in spans}
        assert len(pids) == 2
    with pytest.raises(PoolClosedError):
        await pool.warm()
