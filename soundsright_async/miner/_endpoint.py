"""Endpoint upkeep: publish ``ip:port`` when the chain's endpoint for our hotkey differs.

It runs after every metagraph sync (and at least every ``endpoint_interval_s``) on the synced
metagraph, so it costs no extra chain reads. After a write it waits for a metagraph synced after
the write before it judges the result, so a slow sync never causes a second write.
"""

from __future__ import annotations

import structlog

from ..chain import Chain, WriteStatus
from ..chain._values import format_endpoint
from ..runtime import RetryLater
from ._state import MinerState

__all__ = ["EndpointUpkeep"]

log = structlog.get_logger(__name__)


class EndpointUpkeep:
    def __init__(
        self, chain: Chain, state: MinerState, *, ip: str, port: int, rate_limit_wait_s: float
    ) -> None:
        self.chain = chain
        self.state = state
        self.ip = ip
        self.port = port
        self.wanted = format_endpoint(ip, port)
        self.rate_limit_wait_s = rate_limit_wait_s
        self._seen = 0
        self._served_at_version: int | None = None
        state.endpoint_wanted = self.wanted

    async def wait(self, max_wait_s: float) -> None:
        """Until the next metagraph sync, or ``max_wait_s``."""
        self._seen = await self.state.synced.wait_newer(self._seen, max_wait_s)

    async def step(self) -> float | None:
        state = self.state
        mg = state.metagraph.current()
        if mg is None:
            return None
        state.last_endpoint_check = state.now()
        me = mg.by_hotkey(state.hotkey)
        if me is None:
            state.endpoint_ok = False  # not registered: the sync task says so
            return None
        if me.endpoint == self.wanted:
            if state.endpoint_ok is not True:
                log.info("endpoint.confirmed", endpoint=self.wanted, uid=me.uid)
            state.endpoint_ok = True
            return None
        state.endpoint_ok = False
        if self._served_at_version is not None and state.synced.version <= self._served_at_version:
            return None  # our write is not in a synced metagraph yet
        result = await self.chain.serve(self.ip, self.port)
        state.count("serves_total", result=result.status.value)
        if result.ok:
            self._served_at_version = state.synced.version
            state.last_serve = state.now()
            state.sync_requests.bump()  # confirm it on the next sync, now rather than later
            log.info(
                "endpoint.published", endpoint=self.wanted, previous=me.endpoint, block=result.block
            )
            return None
        if result.status is WriteStatus.RATE_LIMITED:
            raise RetryLater(f"serve rate-limited: {result.reason}", delay=self.rate_limit_wait_s)
        raise RetryLater(f"serve refused: {result.reason}")
