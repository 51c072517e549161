"""Serve an aiohttp app as a supervised task: bind, report the address, serve until cancelled."""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from aiohttp import web

from ._tasks import TaskStatus

__all__ = ["serve_app"]

log = structlog.get_logger(__name__)


async def serve_app(
    status: TaskStatus,
    *,
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout_s: float,
    name: str,
    **server_kwargs: Any,
) -> None:
    """Bind ``app`` on ``host:port``, call ``status.started((host, port))`` with the bound address
    (port 0 picks a free one) and serve until cancelled. On the way out the server stops accepting
    and in-flight requests get ``shutdown_timeout_s`` to finish, shielded so a second cancellation
    cannot leave the socket half-closed. ``server_kwargs`` go to aiohttp's ``AppRunner``."""
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=shutdown_timeout_s, **server_kwargs
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        address = (str(bound[0]), int(bound[1]))
        log.info(f"{name}.listening", host=address[0], port=address[1])
        status.started(address)
        await anyio.sleep_forever()
    finally:
        with anyio.move_on_after(shutdown_timeout_s + 2.0, shield=True):
            await runner.cleanup()
        log.info(f"{name}.stopped")
