"""The miner daemon: one event loop, one root task group of cooperating tasks.

``Miner(settings, hotkey=..., chain=...).run()`` starts, in one anyio task group:

* the signed HTTP server and the local health server (started with readiness: the daemon is
  READY, for systemd too, once both are bound);
* metagraph sync, commitment upkeep and endpoint upkeep (``runtime.every``: back-off on chain
  errors and refused writes, never a spin);
* the systemd watchdog pinger when ``WatchdogSec=`` is set.

Each task runs under ``runtime.supervise``: a crash is logged and the task restarted with back-off.
``stop()`` (SIGTERM/SIGINT when ``handle_signals``) cancels the group: the servers stop accepting
and let in-flight requests finish within ``server.shutdown_timeout_s``. The caller owns the
chain client and closes it afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from ..chain import Chain, ChainError
from ..config import MinerSettings
from ..protocol import commitment_hash
from ..runtime import (
    Backoff,
    SdNotifier,
    ServerLimits,
    TaskStatus,
    periodic,
    ping_watchdog,
    serve_app,
    start_supervised,
    stop_on_signals,
)
from ..wallet import Hotkey
from ._commitment import check_commitment
from ._endpoint import EndpointUpkeep
from ._http import health_app, signed_app
from ._state import MinerState
from ._sync import sync_metagraph
from .feedback import FeedbackStore

__all__ = ["Miner"]

log = structlog.get_logger(__name__)


def signed_limits(settings: MinerSettings) -> ServerLimits:
    """The public signed server's connection limits (``[server]`` settings)."""
    srv = settings.server
    return ServerLimits(
        max_connections=srv.max_connections,
        reserve=srv.reserve_connections,
        max_pending_per_ip=srv.max_pending_per_ip,
        header_timeout_s=srv.header_timeout_s,
        body_timeout_s=srv.body_timeout_s,
        keepalive_timeout_s=srv.keepalive_timeout_s,
        fd_headroom=64 + settings.health.max_connections,
    )


class Miner:
    def __init__(
        self,
        settings: MinerSettings,
        *,
        hotkey: Hotkey,
        chain: Chain,
        notifier: SdNotifier | None = None,
        handle_signals: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.server.published_ip() is None:
            raise ValueError("server.external_ip is required when server.host is unspecified")
        self.settings = settings
        self.chain = chain
        self.notifier = notifier or SdNotifier(None)
        self.handle_signals = handle_signals
        m = settings.model
        self.state = MinerState(
            hotkey=hotkey.ss58_address,
            competition=m.competition,
            namespace=m.namespace,
            name=m.name,
            revision=m.revision,
            commitment_wanted=commitment_hash(
                namespace=m.namespace,
                name=m.name,
                revision=m.revision,
                hotkey=hotkey.ss58_address,
                competition=m.competition,
            ),
            clock=clock,
        )
        self.store = FeedbackStore(
            settings.data_dir,
            max_file_bytes=settings.feedback.max_file_bytes,
            keep_files=settings.feedback.keep_files,
        )
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the daemon to shut down (idempotent, safe from a signal handler)."""
        if not self._stop.is_set():
            log.info("miner.stopping")
        self._stop.set()

    def _restart_backoff(self) -> Backoff:
        u = self.settings.upkeep
        return Backoff(u.restart_backoff_s, u.restart_backoff_max_s)

    def _retry_backoff(self) -> Backoff:
        u = self.settings.upkeep
        return Backoff(u.retry_backoff_s, u.retry_backoff_max_s)

    async def _supervised(
        self, tg: TaskGroup, name: str, fn: Callable[[TaskStatus], Awaitable[None]]
    ) -> Any:
        return await start_supervised(
            tg,
            name,
            fn,
            backoff=self._restart_backoff(),
            on_crash=self.state.task_crashed,
            on_run=self.state.task_running,
        )

    def _loop(
        self, name: str, step: Callable[[], Awaitable[float | None]], interval: float, **kw: Any
    ) -> Callable[[TaskStatus], Awaitable[None]]:
        return periodic(
            name,
            step,
            interval=interval,
            backoff=self._retry_backoff(),
            retry_on=(ChainError,),
            on_success=self.state.task_ticked,
            on_retry=self._step_failed,
            **kw,
        )

    def _step_failed(self, name: str, exc: Exception) -> None:
        self.state.task_failed(name, exc)
        if isinstance(exc, ChainError):
            self.state.count("chain_errors_total", task=name)

    async def run(self) -> None:
        s, state = self.settings, self.state
        log.info(
            "miner.starting",
            hotkey=state.hotkey,
            netuid=s.netuid,
            network=s.chain.network,
            competition=state.competition,
            model=f"{state.namespace}/{state.name}",
            revision=state.revision,
            commitment=state.commitment_wanted,
        )
        await anyio.to_thread.run_sync(self.store.repair)
        try:
            async with anyio.create_task_group() as tg:
                if self.handle_signals:
                    await tg.start(stop_on_signals, self.stop, name="signals")
                await self._start_all(tg)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self.notifier.stopping()
            self.notifier.close()
        log.info("miner.stopped")

    async def _start_all(self, tg: TaskGroup) -> None:
        s, state, u = self.settings, self.state, self.settings.upkeep

        async def http(status: TaskStatus) -> None:
            await serve_app(
                status,
                app=signed_app(s, state, self.store),
                host=s.server.host,
                port=s.server.port if state.http_address is None else state.http_address[1],
                shutdown_timeout_s=s.server.shutdown_timeout_s,
                name="http",
                limits=signed_limits(s),
                on_guard=state.set_http_guard,
            )

        state.board.register("http", max_age_s=float("inf"))
        state.http_address = await self._supervised(tg, "http", http)
        if s.health.enabled:

            async def health(status: TaskStatus) -> None:
                await serve_app(
                    status,
                    app=health_app(state, stale_after_s=3 * u.metagraph_interval_s + 60),
                    host=s.health.host,
                    port=s.health.port if not state.health_address else state.health_address[1],
                    shutdown_timeout_s=2.0,
                    name="health",
                    limits=ServerLimits(
                        max_connections=s.health.max_connections,
                        reserve=1,
                        header_timeout_s=5.0,
                        body_timeout_s=5.0,
                        keepalive_timeout_s=15.0,
                        admit_on_headers=True,
                        fd_headroom=64,
                    ),
                )

            state.health_address = await self._supervised(tg, "health", health)

        async def sync_step() -> float | None:
            await sync_metagraph(self.chain, state)
            return None

        async def commit_step() -> float | None:
            return await check_commitment(
                self.chain,
                state,
                rate_limit_wait_s=u.rate_limit_wait_s,
                confirm_after_s=min(u.commitment_interval_s, u.retry_backoff_s),
            )

        ip = s.server.published_ip()
        assert ip is not None  # checked in __init__
        endpoint = EndpointUpkeep(
            self.chain,
            state,
            ip=ip,
            port=s.server.external_port or state.http_address[1],
            rate_limit_wait_s=u.rate_limit_wait_s,
        )
        requests_seen = 0

        async def sync_wait(max_wait_s: float) -> None:
            """The interval, or less when a task asks for a sync (to confirm its write)."""
            nonlocal requests_seen
            requests_seen = await state.sync_requests.wait_newer(requests_seen, max_wait_s)

        loops = {
            "metagraph": self._loop("metagraph", sync_step, u.metagraph_interval_s, wait=sync_wait),
            "commitment": self._loop("commitment", commit_step, u.commitment_interval_s),
        }
        for name, fn in loops.items():
            await self._supervised(tg, name, fn)
        await self._supervised(
            tg,
            "endpoint",
            self._loop("endpoint", endpoint.step, u.endpoint_interval_s, wait=endpoint.wait),
        )
        if (ping := self.notifier.watchdog_interval_s) is not None:
            tg.start_soon(ping_watchdog, self.notifier, ping, name="watchdog")
        self.notifier.ready(
            f"serving {state.competition} {state.namespace}/{state.name}@{state.revision[:12]} "
            f"on {state.http_address[0]}:{state.http_address[1]}"
        )
        self.ready.set()
        log.info(
            "miner.ready",
            http=":".join(map(str, state.http_address)),
            health=None
            if state.health_address is None
            else ":".join(map(str, state.health_address)),
            endpoint=endpoint.wanted,
        )
