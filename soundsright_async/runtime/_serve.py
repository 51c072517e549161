"""Serve an aiohttp app as a supervised task: bind, report the address, serve until cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import structlog
from aiohttp import web

from ._guard import ConnectionGuard, ServerLimits, clamp_to_nofile
from ._listen import GuardedListener
from ._tasks import TaskStatus

__all__ = ["serve_app"]

log = structlog.get_logger(__name__)


class _GuardedSite(web.TCPSite):
    """``TCPSite`` whose connections go through a ``ConnectionGuard``."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard):
        super().__init__(runner, host, port, backlog=4096)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = GuardedListener.bind(
            self._host or "0.0.0.0",
            self._port,
            self._guard,
            self._guard.factory(server),
            backlog=self._backlog,
        )


async def serve_app(
    status: TaskStatus,
    *,
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout_s: float,
    name: str,
    limits: ServerLimits | None = None,
    on_guard: Any = None,
    **server_kwargs: Any,
) -> None:
    """Bind ``app`` on ``host:port``, call ``status.started((host, port))`` with the bound address
    (port 0 picks a free one) and serve until cancelled. On the way out the server stops accepting
    and in-flight requests get ``shutdown_timeout_s`` to finish, shielded so a second cancellation
    cannot leave the socket half-closed. ``server_kwargs`` go to aiohttp's ``AppRunner``.

    With ``limits`` every connection goes through a ``ConnectionGuard`` (deadlines, cap with a
    reserve, summary logging; see ``runtime._guard``); ``on_guard(guard)`` is called with it once
    bound (for ``/metrics``)."""
    guard: ConnectionGuard | None = None
    if limits is not None:
        guard = ConnectionGuard(clamp_to_nofile(limits), name=name)
        app.middlewares.insert(0, guard.middleware())
        server_kwargs = {**guard.limits.runner_kwargs(guard.stats), **server_kwargs}
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=shutdown_timeout_s, **server_kwargs
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    try:
        site = (
            web.TCPSite(runner, host, port)
            if guard is None
            else _GuardedSite(runner, host, port, guard)
        )
        await site.start()
        bound = runner.addresses[0]
        address = (str(bound[0]), int(bound[1]))
        log.info(
            f"{name}.listening",
            host=address[0],
            port=address[1],
            max_connections=None if guard is None else guard.limits.max_connections,
        )
        async with anyio.create_task_group() as tg:
            if guard is not None:
                loop.set_exception_handler(guard.exception_handler(previous_handler))
                tg.start_soon(guard.report)
                if on_guard is not None:
                    on_guard(guard)
            status.started(address)
            await anyio.sleep_forever()
    finally:
        if guard is not None:
            loop.set_exception_handler(previous_handler)
        with anyio.move_on_after(shutdown_timeout_s + 2.0, shield=True):
            await runner.cleanup()
        log.info(f"{name}.stopped")
