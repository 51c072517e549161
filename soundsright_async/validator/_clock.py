"""The epoch clock: watches the head block; records each epoch with its seed when it starts and
asks for judging when it ends.

At start-up it also settles the past: the epoch that ended while the daemon was down is judged
late if its benchmarks are in the store; older unjudged epochs are marked ``missed`` (nothing was
judged for them, and the log says so).
"""

from __future__ import annotations

import structlog

from ._context import Services
from ._epochs import seed_from_hash

__all__ = ["EpochClockTask"]

log = structlog.get_logger(__name__)


class EpochClockTask:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._asked: set[int] = set()

    async def step(self) -> float | None:
        svc, state = self.svc, self.svc.state
        head = await svc.chain.block()
        state.head = head
        epoch = state.clock.epoch_of(head.number)
        if epoch is None:
            log.info(
                "epoch.before_anchor",
                block=head.number,
                anchor=state.clock.anchor_block,
                blocks_to_go=state.clock.anchor_block - head.number,
            )
            return None
        if state.epoch is None or state.epoch.number != epoch:
            await self._settle_past(epoch)
            await self._begin(epoch)
        assert state.epoch is not None
        state.metrics.epoch.set(epoch)
        state.metrics.blocks_left.set(state.clock.blocks_left(epoch, head.number))
        return None

    async def _begin(self, epoch: int) -> None:
        svc, state = self.svc, self.svc.state
        start = state.clock.start(epoch)
        stored = await svc.store.epoch(epoch)
        if stored is None:
            start_hash = await svc.chain.block_hash(start)
            stored = await svc.store.record_epoch(
                epoch,
                start_block=start,
                end_block=state.clock.end(epoch),
                start_hash=start_hash,
                seed=seed_from_hash(start_hash),
            )
            log.info(
                "epoch.started",
                epoch=epoch,
                start_block=start,
                end_block=stored.end_block,
                seed=stored.seed,
                start_hash=start_hash,
            )
        else:
            requeued = await svc.store.requeue_interrupted(epoch)
            log.info(
                "epoch.resumed",
                epoch=epoch,
                seed=stored.seed,
                status=stored.status,
                requeued=requeued,
            )
        state.epoch = stored
        state.epochs.bump()
        state.work.bump()

    async def _settle_past(self, current: int) -> None:
        svc = self.svc
        past = [e for e in await svc.store.epochs("open", "ready") if e.number < current]
        for e in past:
            if e.number == current - 1 and e.status == "ready":
                if e.number not in self._asked:
                    self._asked.add(e.number)
                    log.info("epoch.ended", epoch=e.number, end_block=e.end_block)
                    await svc.judge_requests.send(e.number)
            else:
                why = "no dataset" if e.status == "open" else "the daemon was down at its end"
                await svc.store.set_epoch(e.number, status="missed", note=why)
                log.warning("epoch.not_judged", epoch=e.number, reason=why)
        known = {e.number for e in await svc.store.epochs()}
        latest = max(known, default=None)
        if latest is not None and current - latest > 1:
            log.warning(
                "epoch.missed",
                first=latest + 1,
                last=current - 1,
                reason="the daemon was not running; these epochs are not judged",
            )
