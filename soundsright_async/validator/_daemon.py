"""The validator daemon: one event loop, one root task group of cooperating tasks.

``Validator(settings, secrets, hotkey=..., chain=...).run()`` opens the store, the scoring pool,
the container engines (their start-up sweep removes what a crashed run left behind) and the model
cache, then starts, each supervised (a crash is logged and the task restarted with back-off):

==============  ===================================================================
status          ``/healthz``, ``/status``, ``/metrics`` on 127.0.0.1 (readiness: bound)
metagraph       ``_sync.sync_metagraph`` every ``metagraph_interval_s``
clock           ``_clock.EpochClockTask``: records epochs and seeds, asks for judging
datasets        ``_datasets.refresh_datasets`` when the epoch changes
discovery       ``_discovery.discover`` every ``[discovery] interval_s`` and per epoch
scheduler       ``_scheduler.Scheduler``: fetch and benchmark every accepted model
judging         ``_judge.judge_requests``: judges the epochs the clock hands over
weights         ``_weights.set_weights_step`` every ``interval_blocks``
feedback        ``_feedback.FeedbackDispatcher``: drains the outbox
reporting       ``_reporting.Reporter``: audit log and the optional report server
==============  ===================================================================

plus the loop-lag monitor and the systemd watchdog. READY (for systemd too) once the store is
open and the status server is bound. ``stop()`` (SIGTERM/SIGINT with ``handle_signals``) cancels
the group: runs in flight are cancelled (the runner removes their containers, networks and
images), the engines and pool close, and the store closes last.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from .._exceptions import ConfigError
from ..audio.dataset import DatasetError
from ..audio.pool import ScoringPool
from ..chain import Chain, ChainError
from ..config import Secrets
from ..net import SignedClient
from ..runtime import (
    Backoff,
    Changes,
    SdNotifier,
    TaskStatus,
    periodic,
    ping_watchdog,
    serve_app,
    start_supervised,
    stop_on_signals,
    watch_loop_lag,
)
from ..sandbox import ModelCache, ModelSourceError
from ..sandbox.setup import build_source, limits_of, open_runner
from ..wallet import Hotkey
from ._clock import EpochClockTask
from ._context import Services
from ._datasets import refresh_datasets
from ._discovery import discover
from ._epochs import EpochClock
from ._feedback import FeedbackDispatcher
from ._judge import judge_requests
from ._reporting import Reporter
from ._scheduler import Scheduler
from ._state import ValidatorState
from ._status import STATUS_LIMITS, status_app
from ._store import Store, StoreError
from ._sync import sync_metagraph
from ._weights import set_weights_step
from .settings import ValidatorSettings

__all__ = ["Validator"]

log = structlog.get_logger(__name__)
_RETRY_ON: tuple[type[Exception], ...] = (
    ChainError,
    StoreError,
    DatasetError,
    ModelSourceError,
    OSError,
)


def _waiter(changes: Changes) -> Callable[[float], Awaitable[object]]:
    """A wait that returns early when ``changes`` moves on."""
    seen = [changes.version]

    async def wait(max_s: float) -> None:
        seen[0] = await changes.wait_newer(seen[0], max_s)

    return wait


class Validator:
    def __init__(
        self,
        settings: ValidatorSettings,
        secrets: Secrets,
        *,
        hotkey: Hotkey,
        chain: Chain,
        notifier: SdNotifier | None = None,
        handle_signals: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.hotkey = hotkey
        self.chain = chain
        self.notifier = notifier or SdNotifier(None)
        self.handle_signals = handle_signals
        c = settings.competition
        self.state = ValidatorState(
            hotkey=hotkey.ss58_address,
            clock=EpochClock(c.epoch_blocks, c.anchor_block, c.stop_margin_blocks),
            competitions=tuple(c.competitions),
            now=clock,
        )
        self.status_address: tuple[str, int] | None = None
        self._stop = anyio.Event() if _in_loop() else None
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the daemon to shut down (idempotent, safe from a signal handler). In a process
        that owns its signals, a shutdown that overruns ``shutdown_timeout_s`` (an engine that
        no longer answers, say) ends the process (exit 1) rather than hang until systemd kills
        it; everything finished is in the store already."""
        if not self._stop_requested:
            log.info("validator.stopping")
            if self.handle_signals:
                limit = self.settings.daemon.shutdown_timeout_s
                timer = threading.Timer(limit, _overrun, args=(limit,))
                timer.daemon = True
                timer.start()
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        s, state = self.settings, self.state
        if self._stop is None:
            self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        log.info(
            "validator.starting",
            hotkey=state.hotkey,
            netuid=s.netuid,
            network=s.chain.network,
            competitions=list(state.competitions),
            epoch_blocks=s.competition.epoch_blocks,
            data_dir=str(s.data_dir),
        )
        try:
            async with AsyncExitStack() as stack:
                store = await Store(s.store_path(), clock=state.now).open()
                stack.push_async_callback(store.aclose)
                async with anyio.create_task_group() as tg:
                    if self.handle_signals:
                        await tg.start(stop_on_signals, self.stop, name="signals")
                    tg.start_soon(watch_loop_lag, state.lag, name="loop-lag")
                    await self._start_status(tg, store)
                    tg.start_soon(self._stop_watch, tg)
                    svc = await self._open(stack, store)
                    await self._start_all(tg, svc)
                    await self._stop.wait()
                    tg.cancel_scope.cancel()
        finally:
            self.notifier.stopping()
            self.notifier.close()
        log.info("validator.stopped")

    async def _stop_watch(self, tg: TaskGroup) -> None:
        """A stop requested while the services are still opening cancels the opening too."""
        assert self._stop is not None
        await self._stop.wait()
        tg.cancel_scope.cancel()

    async def _start_status(self, tg: TaskGroup, store: Store) -> None:
        s, state = self.settings, self.state
        if not s.status.enabled:
            return

        async def status(task_status: TaskStatus) -> None:
            port = s.status.port if self.status_address is None else self.status_address[1]
            await serve_app(
                task_status,
                app=status_app(state, store),
                host=s.status.host,
                port=port,
                shutdown_timeout_s=2.0,
                name="status",
                limits=STATUS_LIMITS,
            )

        self.status_address = await self._supervised(tg, "status", status)

    async def _open(self, stack: AsyncExitStack, store: Store) -> Services:
        s = self.settings
        pool = await stack.enter_async_context(ScoringPool(s.scoring.workers or None))
        backoff = self._retry_backoff()
        while True:
            try:
                runner = await stack.enter_async_context(
                    open_runner(s.sandbox, pool=pool, work_dir=s.data_dir / "work")
                )
                break
            except ConfigError:  # limits the engine's host cannot fit: fix the config
                raise
            except Exception as exc:  # the engine is down or answered nonsense: keep trying
                delay = backoff.next()
                self.state.board.failed("engines", exc)
                log.error(
                    "sandbox.engines_unavailable",
                    error=str(exc) or repr(exc),
                    error_type=type(exc).__name__,
                    retry_in_s=delay,
                )
                await anyio.sleep(delay)
        self.state.board.tick("engines")
        self.state.engines = runner.loads
        source = build_source(s.models, self.secrets.hf_token)
        models = ModelCache(
            source,
            s.data_dir / "models",
            limits_of(s.models),
            max_concurrent=s.models.max_concurrent_downloads,
        )
        client = SignedClient(
            self.hotkey,
            concurrency=max(s.discovery.concurrency * len(self.state.competitions), 16),
            deadline_s=s.discovery.call_timeout_s,
            max_response_bytes=s.discovery.max_response_bytes,
        )
        stack.push_async_callback(client.aclose)
        send, receive = anyio.create_memory_object_stream[int](16)
        stack.enter_context(send)
        self._judge_inbox = receive
        stack.enter_context(receive)
        return Services(
            settings=s,
            secrets=self.secrets,
            hotkey=self.hotkey,
            chain=self.chain,
            store=store,
            state=self.state,
            client=client,
            pool=pool,
            runner=runner,
            models=models,
            judge_requests=send,
        )

    def _restart_backoff(self) -> Backoff:
        d = self.settings.daemon
        return Backoff(d.restart_backoff_s, d.restart_backoff_max_s)

    def _retry_backoff(self) -> Backoff:
        d = self.settings.daemon
        return Backoff(d.retry_backoff_s, d.retry_backoff_max_s)

    async def _supervised(
        self,
        tg: TaskGroup,
        name: str,
        fn: Callable[[TaskStatus], Awaitable[None]],
        *,
        max_age_s: float = float("inf"),
    ) -> Any:
        board = self.state.board
        board.register(name, max_age_s=max_age_s)
        return await start_supervised(
            tg,
            name,
            fn,
            backoff=self._restart_backoff(),
            on_crash=board.crashed,
            on_run=board.running,
        )

    def _loop(
        self,
        name: str,
        step: Callable[[], Awaitable[float | None]],
        interval: float,
        wait: Callable[[float], Awaitable[object]] = anyio.sleep,
    ) -> Callable[[TaskStatus], Awaitable[None]]:
        board = self.state.board
        return periodic(
            name,
            step,
            interval=interval,
            backoff=self._retry_backoff(),
            retry_on=_RETRY_ON,
            wait=wait,
            on_success=board.tick,
            on_retry=board.failed,
        )

    async def _start_all(self, tg: TaskGroup, svc: Services) -> None:
        s, state = self.settings, self.state

        async def metagraph() -> float | None:
            return await sync_metagraph(svc)

        d, c = s.daemon, s.competition
        chain_deadline = s.chain.call_timeout_s * (s.chain.retries + 1)
        await self._supervised(
            tg,
            "metagraph",
            self._loop("metagraph", metagraph, d.metagraph_interval_s),
            max_age_s=3 * d.metagraph_interval_s + chain_deadline,
        )
        clock = EpochClockTask(svc)
        await self._supervised(
            tg,
            "clock",
            self._loop("clock", clock.step, c.clock_interval_s),
            max_age_s=3 * c.clock_interval_s + chain_deadline,
        )

        async def datasets() -> float | None:
            return await refresh_datasets(svc)

        await self._supervised(
            tg, "datasets", self._loop("datasets", datasets, 60.0, _waiter(state.epochs))
        )

        async def discovery() -> float | None:
            await discover(svc)
            return None

        await self._supervised(
            tg,
            "discovery",
            self._loop("discovery", discovery, s.discovery.interval_s, _waiter(state.epochs)),
            max_age_s=3 * s.discovery.interval_s + 4 * s.discovery.call_timeout_s + 60,
        )
        scheduler = Scheduler(svc)

        async def schedule(status: TaskStatus) -> None:
            await scheduler.run(task_status=status)

        await self._supervised(tg, "scheduler", schedule, max_age_s=120.0)
        inbox = self._judge_inbox

        async def judging(status: TaskStatus) -> None:
            status.started()
            await judge_requests(svc, inbox)

        await self._supervised(tg, "judging", judging)

        async def weights() -> float | None:
            return await set_weights_step(svc)

        await self._supervised(
            tg, "weights", self._loop("weights", weights, 60.0, _waiter(state.judged))
        )
        dispatcher = FeedbackDispatcher(svc)

        async def feedback(status: TaskStatus) -> None:
            status.started()
            await dispatcher.run()

        await self._supervised(tg, "feedback", feedback, max_age_s=300.0)
        reporter = Reporter(svc)
        tg.start_soon(_close_later, reporter.aclose)
        await self._supervised(
            tg, "reporting", self._loop("reporting", reporter.step, 60.0, _waiter(state.judged))
        )
        if (ping := self.notifier.watchdog_interval_s) is not None:
            tg.start_soon(ping_watchdog, self.notifier, ping, name="watchdog")
        state.ready = True
        where = (
            "" if self.status_address is None else " status on {}:{}".format(*self.status_address)
        )
        self.notifier.ready(f"validating netuid {s.netuid}{where}")
        log.info(
            "validator.ready",
            status=None if self.status_address is None else ":".join(map(str, self.status_address)),
        )


async def _close_later(close: Callable[[], Awaitable[None]]) -> None:
    """Run ``close`` when the group is cancelled (shielded, time-boxed)."""
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.move_on_after(5, shield=True):
            await close()


def _overrun(limit: float) -> None:
    log.error("validator.shutdown_overrun", timeout_s=limit, hint="exiting without cleanup")
    os._exit(1)


def _in_loop() -> bool:
    try:
        anyio.get_current_task()
    except RuntimeError:
        return False
    return True
