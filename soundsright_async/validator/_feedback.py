"""Feedback dispatch: the outbox in the store, drained by one worker.

Items are queued in the same transaction as the result (one per result) or the judgement (one
per miner, with the winners). Each due item is sent once as a signed ``POST /v3/feedback`` to the
hotkey's current endpoint, up to ``concurrency`` at once, each under a total deadline. A failure is
retried with exponential back-off; an item not delivered by its ``expires_at`` is given up
(logged). Nothing is ever re-sent after a success, and a restart resumes the queue.
"""

from __future__ import annotations

import anyio
import structlog

from ..net import PeerError, PeerRejectedError
from ..protocol import FEEDBACK_PATH
from ._context import Services
from ._store import OutboxItem

__all__ = ["FeedbackDispatcher"]

log = structlog.get_logger(__name__)


class FeedbackDispatcher:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def _delay(self, attempts: int) -> float:
        f = self.svc.settings.feedback
        return float(min(f.retry_backoff_max_s, f.retry_backoff_s * 2**attempts))

    async def run(self) -> None:
        svc, state = self.svc, self.svc.state
        seen = -1
        while True:
            await self.drain()
            state.board.tick("feedback")
            counts = await svc.store.outbox_counts()
            state.metrics.queue.labels("feedback").set(counts.get("pending", 0))
            next_at = await svc.store.outbox_next_at()
            wait = 60.0 if next_at is None else max(0.05, min(60.0, next_at - state.now()))
            seen = await state.outbox.wait_newer(seen, wait)

    async def drain(self) -> None:
        svc = self.svc
        limiter = anyio.CapacityLimiter(svc.settings.feedback.concurrency)
        while True:
            due = await svc.store.outbox_due(svc.state.now(), limit=256)
            if not due:
                return
            async with anyio.create_task_group() as tg:
                for item in due:
                    tg.start_soon(self._send, item, limiter)

    async def _send(self, item: OutboxItem, limiter: anyio.CapacityLimiter) -> None:
        svc, state = self.svc, self.svc.state
        now = state.now()
        if now >= item.expires_at:
            await svc.store.outbox_done(item.id, "expired", "not delivered in time")
            state.metrics.feedback.labels("expired").inc()
            log.warning(
                "feedback.given_up", hotkey=item.hotkey, kind=item.kind, attempts=item.attempts
            )
            return
        mg = state.metagraph
        neuron = None if mg is None else mg.by_hotkey(item.hotkey)
        if neuron is None or not neuron.endpoint:
            error = "no endpoint on chain" if neuron is not None else "not registered"
            await svc.store.outbox_retry(item.id, now + self._delay(item.attempts), error)
            return
        async with limiter:
            try:
                resp = await svc.client.post(
                    neuron.endpoint,
                    FEEDBACK_PATH,
                    item.body,
                    receiver=item.hotkey,
                    deadline_s=svc.settings.feedback.call_timeout_s,
                )
                if not 200 <= resp.status < 300:
                    raise PeerRejectedError(
                        f"HTTP {resp.status}",
                        status=resp.status,
                        endpoint=neuron.endpoint,
                        hotkey=item.hotkey,
                        path=FEEDBACK_PATH,
                    )
            except PeerError as exc:
                delay = self._delay(item.attempts)
                await svc.store.outbox_retry(item.id, state.now() + delay, exc.problem)
                state.metrics.feedback.labels("retry").inc()
                log.info(
                    "feedback.retry",
                    hotkey=item.hotkey,
                    kind=item.kind,
                    error=exc.problem,
                    retry_in_s=delay,
                )
                return
        await svc.store.outbox_done(item.id, "sent")
        state.metrics.feedback.labels("sent").inc()
        log.info(
            "feedback.sent",
            hotkey=item.hotkey,
            kind=item.kind,
            epoch=item.epoch,
            competition=item.competition,
        )
