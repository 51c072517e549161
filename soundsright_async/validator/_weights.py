"""Weight setting: the latest judged weights, every ``interval_blocks`` and within the chain's
rate limit. A refused or failed write is retried with back-off and never counted as set; until
the first judgement none are set; a uid whose hotkey changed since the judgement gets nothing."""

from __future__ import annotations

import orjson
import structlog

from ..chain import Metagraph
from ..runtime import RetryLater
from ._context import Services

__all__ = ["set_weights_step", "weights_for"]

log = structlog.get_logger(__name__)


def weights_for(
    judged_hotkeys: list[str], weights: list[float], metagraph: Metagraph
) -> dict[int, float]:
    """uid -> weight for the uids that still hold the hotkey they were judged with (empty when
    the judge found no payable uid: ``weights`` is then empty)."""
    out: dict[int, float] = {}
    if not weights:
        return out
    for uid, (hotkey, w) in enumerate(zip(judged_hotkeys, weights, strict=True)):
        if w <= 0:
            continue
        if uid < len(metagraph) and metagraph.neurons[uid].hotkey == hotkey:
            out[uid] = float(w)
    return out


async def set_weights_step(svc: Services) -> float | None:
    state, store = svc.state, svc.store
    latest = await store.judgement()
    if latest is None:
        return None
    epoch, input_text, output_text = latest
    head = await svc.chain.block()
    state.head = head
    last = await store.last_weights_set()
    interval = svc.settings.weights.interval_blocks
    if last is not None and last["epoch"] == epoch and last["block"] is not None:
        due = int(last["block"]) + interval
        if head.number < due:
            block_time = await svc.chain.block_time()
            return max(1.0, (due - head.number) * block_time)
    mg = await svc.chain.metagraph()
    state.metagraph = mg
    output = orjson.loads(output_text)
    weights = weights_for(orjson.loads(input_text)["hotkeys"], output["weights"], mg)
    if not weights:
        # The judge paid nobody, or every paid uid changed hands since the judgement.
        why = "hotkeys_changed" if output["weights"] else "no_payable_uid"
        await store.record_weights(epoch, head.number, "skipped", why, {})
        state.metrics.weights.labels("skipped").inc()
        log.warning("weights.nothing_to_set", epoch=epoch, reason=why)
        block_time = await svc.chain.block_time()
        return interval * block_time
    result = await svc.chain.set_weights(weights)
    status = result.status.value
    state.metrics.weights.labels(status).inc()
    await store.record_weights(epoch, result.block or head.number, status, result.reason, weights)
    if not result.ok:
        log.warning("weights.refused", epoch=epoch, status=status, reason=result.reason)
        raise RetryLater(f"{status}: {result.reason}")
    log.info("weights.set", epoch=epoch, block=result.block or head.number, uids=len(weights))
    block_time = await svc.chain.block_time()
    return interval * block_time
