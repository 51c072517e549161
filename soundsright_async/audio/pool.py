"""A process pool for CPU-bound audio work (metrics, mixing, resampling) with an async API.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies, every pending
job fails with ``BrokenProcessPool`` and the executor is unusable, and a running job cannot be
stopped. Here each job runs on one known worker process, so

* a worker that dies (signal, ``os._exit``, OOM kill) fails exactly the job it was running, with
  ``WorkerCrashedError`` naming the job and the exit status; a new worker takes its place;
* cancelling a queued job removes it before it starts; cancelling a running job kills its worker
  (the CPU is freed at once) and a fresh worker serves the next job;
* at most ``workers`` jobs run at once; workers start on demand and stay warm.

Blocking pipe I/O runs on a small private thread pool, never on the event loop.

    async with ScoringPool(workers=2) as pool:
        result = await pool.score("DENOISING_16000HZ", clean_dir, enhanced_dir)
        value = await pool.run(some_module_level_function, arg1, arg2)
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog

from .._exceptions import InputError, PoolClosedError, WorkerCrashedError
from ..competitions import Competition, get_competition
from .metrics import DatasetScore, FileScore, aggregate, list_clean_files, score_file

__all__ = ["ProgressCallback", "ScoringPool", "default_workers"]

P = ParamSpec("P")
R = TypeVar("R")
ProgressCallback = Callable[[int, int], None]

log = structlog.get_logger(__name__)

_PRELOAD = ["soundsright_async.audio.metrics", "numpy", "scipy.signal", "pesq", "pystoi"]


def default_workers() -> int:
    """CPUs this process may run on (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _limit_threads(threads: int) -> None:
    """Cap native thread pools (BLAS, OpenMP) in a worker: the pool already runs one worker per
    CPU, and N workers x N BLAS threads oversubscribe the machine (measured: slower than serial).
    Env vars cover libraries loaded later; threadpoolctl caps the ones already loaded."""
    for name in _THREAD_ENV:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


WORKER_NICENESS = 5


def _worker_main(conn: Connection, threads: int = 1) -> None:
    """Worker process loop: receive ``(fn, args, kwargs)``, reply ``("ok", value)`` or an error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    _limit_threads(threads)
    # CPU-bound jobs yield to the daemon's event loop when the cores are busy: the loop's
    # wake-ups (deadlines, health, servers) matter more than a score arriving 1% sooner.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args, kwargs = msg
        try:
            reply: tuple[Any, ...] = ("ok", fn(*args, **kwargs))
        except Exception as exc:
            reply = ("err", _portable(exc), traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:  # the result itself could not be pickled
            conn.send(("err", RuntimeError(f"job result not picklable: {exc}"), ""))


def _portable(exc: Exception) -> Exception:
    """The exception if it survives a pickle round trip, else a RuntimeError describing it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class _WorkerDied(Exception):
    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode


class _Worker:
    def __init__(self, ctx: BaseContext, threads: int) -> None:
        parent, child = multiprocessing.Pipe(duplex=True)
        self.conn = parent
        self.process: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child, threads),
            name="soundsright-pool-worker",
            daemon=True,
        )
        self.process.start()
        child.close()

    def call(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        """Blocking: send one job and wait for its reply. Runs on the pool's thread executor."""
        try:
            self.conn.send(msg)
            reply: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):  # the worker died: its end of the pipe closed
            self.process.join(timeout=5)
            raise _WorkerDied(self.process.exitcode) from None
        return reply

    def alive(self) -> bool:
        return self.process.is_alive() and not self.conn.closed

    def kill(self) -> None:
        """Non-blocking SIGKILL; the process is reaped later by ``close``."""
        if self.process.is_alive():
            self.process.kill()

    def close(self, graceful: bool = False) -> None:
        """Blocking: stop the process and release its pipe."""
        if graceful and self.alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class ScoringPool:
    """Bounded pool of worker processes; use as ``async with ScoringPool() as pool``."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        threads_per_worker: int = 1,
        start_method: str = "forkserver",
    ) -> None:
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if threads_per_worker < 1:
            raise ValueError("threads_per_worker must be >= 1")
        self.threads_per_worker = threads_per_worker
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(_PRELOAD)
        self._slots = asyncio.Semaphore(self.workers)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        # one thread per running job (blocked on its pipe) plus room for spawns and reaping
        self._threads = ThreadPoolExecutor(
            max_workers=2 * self.workers + 1, thread_name_prefix="soundsright-pool"
        )
        self._closed = False

    async def __aenter__(self) -> ScoringPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` in a worker process; ``fn`` must be module-level."""
        job = getattr(fn, "__qualname__", repr(fn))
        if self._closed:
            raise PoolClosedError(f"pool is closed; cannot run {job}")
        loop = asyncio.get_running_loop()
        async with self._slots:  # waiting here is "queued": cancelling it drops the job
            if self._closed:
                raise PoolClosedError(f"pool is closed; cannot run {job}")
            worker = await self._checkout(loop)
            healthy = False
            try:
                reply = await loop.run_in_executor(self._threads, worker.call, (fn, args, kwargs))
                healthy = True
            except asyncio.CancelledError:
                worker.kill()  # stop the CPU work now; the worker is replaced next time
                raise
            except _WorkerDied as died:
                log.warning("pool.worker_died", job=job, exitcode=died.exitcode)
                raise WorkerCrashedError(job, died.exitcode) from None
            finally:
                self._checkin(worker, healthy)
        if reply[0] == "ok":
            return reply[1]  # type: ignore[no-any-return]
        exc: Exception = reply[1]
        if reply[2]:
            exc.add_note(f"raised in pool worker running {job}:\n{reply[2]}")
        raise exc

    async def warm(self) -> None:
        """Start every worker now (in parallel) instead of on first use; daemons call this at
        start-up so the first jobs do not pay for process start-up and library imports."""
        if self._closed:
            raise PoolClosedError("pool is closed")
        loop = asyncio.get_running_loop()
        missing = self.workers - len(self._idle) - len(self._busy)
        started = await asyncio.gather(
            *(
                loop.run_in_executor(self._threads, _Worker, self._ctx, self.threads_per_worker)
                for _ in range(missing)
            )
        )
        self._idle.extend(started)

    async def _checkout(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive():
                self._busy.add(worker)
                return worker
            self._threads.submit(worker.close)
        worker = await loop.run_in_executor(
            self._threads, _Worker, self._ctx, self.threads_per_worker
        )
        self._busy.add(worker)
        return worker

    def _checkin(self, worker: _Worker, healthy: bool) -> None:
        self._busy.discard(worker)
        if healthy and not self._closed:
            self._idle.append(worker)
        else:
            worker.kill()
            self._threads.submit(worker.close)

    async def score(
        self,
        competition: Competition | str,
        clean_dir: str | os.PathLike[str],
        enhanced_dir: str | os.PathLike[str],
        noisy_dir: str | os.PathLike[str] | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> DatasetScore:
        """Score a dataset, one job per file across the workers; same result as
        ``metrics.score_dataset``. ``progress(done, total)`` is called as files finish."""
        comp = get_competition(competition) if isinstance(competition, str) else competition
        if comp.needs_noisy and noisy_dir is None:
            raise InputError(f"{comp.name} needs the degraded (noisy) directory for SI-* metrics")
        names = await asyncio.to_thread(list_clean_files, clean_dir)
        clean, enhanced = Path(clean_dir), Path(enhanced_dir)
        noisy = Path(noisy_dir) if noisy_dir is not None else None
        total, done = len(names), 0
        if progress:
            progress(0, total)

        async def one(name: str) -> FileScore:
            nonlocal done
            result = await self.run(
                score_file,
                comp.name,
                clean / name,
                enhanced / name,
                noisy / name if noisy is not None else None,
            )
            done += 1
            if progress:
                progress(done, total)
            return result

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(n)) for n in names]
        return aggregate(comp, (t.result() for t in tasks))

    async def aclose(self) -> None:
        """Stop accepting jobs, stop idle workers gracefully and running ones by force."""
        if self._closed:
            return
        self._closed = True
        idle, self._idle = self._idle, []
        for w in self._busy:
            w.kill()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._threads, w.close, True) for w in idle),
            return_exceptions=True,
        )
        await asyncio.to_thread(self._threads.shutdown, wait=True)
