"""Judging at the epoch end: the judge input built from the store, the pure judge called, input
and output stored verbatim (``soundsright judge --input`` replays the output byte for byte), and
every miner's epoch Feedback queued, all in one transaction."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import structlog

from ..chain import ChainError
from ..runtime import Backoff
from ..validator.judging import judge_epoch, judgement_to_dict, parse_epoch_input
from ._context import Services
from ._messages import epoch_feedback, judge_input
from ._store import StoreError

__all__ = ["judge", "render_json"]

log = structlog.get_logger(__name__)


def render_json(doc: Any) -> str:
    """The exact text ``soundsright judge --json`` prints (and the store keeps)."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


async def judge(svc: Services, epoch_number: int) -> None:
    state, store = svc.state, svc.store
    epoch = await store.epoch(epoch_number)
    if epoch is None or epoch.status == "judged":
        return
    wait = svc.settings.competition.judge_wait_s
    with anyio.move_on_after(wait):
        while state.inflight(epoch_number):
            log.info("judging.waiting", epoch=epoch_number, running=state.inflight(epoch_number))
            await state.work.wait_newer(state.work.version, 5.0)
    if state.metagraph is None:
        state.metagraph = await svc.chain.metagraph()
    mg = state.metagraph
    candidates = await store.candidates(epoch_number)
    results = await store.results(epoch_number)
    baseline: dict[str, dict[str, float]] = {}
    for r in results:
        if r.kind == "baseline" and r.passed:
            baseline.setdefault(r.competition, {}).update(r.averages())
    previous: dict[str, Any] = {}
    last = await store.judgement()
    if last is not None and last[0] < epoch_number:
        previous = orjson.loads(last[2]).get("winners", {})
    doc = judge_input(
        hotkeys=mg.hotkeys,
        permits=[n.validator_permit for n in mg.neurons],
        candidates=candidates,
        results=results,
        baseline=baseline,
        previous_winners=previous,
        unprocessed={
            c: {m: float(r["average"]) for m, r in score.get("metrics", {}).items()}
            for c, score in (await store.unprocessed(epoch_number)).items()
        },
        burn_uid=svc.settings.weights.burn_uid,
    )
    input_text = render_json(doc)
    judgement = judge_epoch(parse_epoch_input(orjson.loads(input_text)))
    output = judgement_to_dict(judgement)
    output_text = render_json(output)
    uids = {hk: uid for uid, hk in enumerate(mg.hotkeys)}
    outbox = epoch_feedback(
        candidates,
        {(r.hotkey, r.competition): r for r in results},
        output.get("winners", {}),
        uids,
        seed=epoch.seed,
        expires_at=state.now() + svc.settings.feedback.give_up_after_s,
    )
    await store.save_judgement(epoch_number, input_text, output_text, outbox)
    state.judged.bump()
    state.outbox.bump()
    winners = {
        f"{c}.{m}": w["hotkey"]
        for c, ws in output.get("winners", {}).items()
        for m, w in ws.items()
    }
    log.info(
        "epoch.judged",
        epoch=epoch_number,
        results=sum(1 for r in results if r.kind == "miner"),
        winners=winners or None,
        weights={uid: round(w, 6) for uid, w in enumerate(judgement.weights) if w > 0} or None,
        feedback_queued=len(outbox),
    )


async def judge_requests(svc: Services, receive: anyio.abc.ObjectReceiveStream[int]) -> None:
    """The judging task: judge each epoch the clock hands over, in order. A judgement the outside
    world failed (chain unreachable, disk full) is retried with back-off: the request was taken
    from the stream, so a crash here would leave the epoch unjudged until a restart."""
    d = svc.settings.daemon
    async for number in receive:
        svc.state.board.tick("judging")
        backoff = Backoff(d.retry_backoff_s, d.retry_backoff_max_s)
        while True:
            try:
                await judge(svc, number)
                break
            except (ChainError, StoreError, OSError) as exc:
                delay = backoff.next()
                svc.state.board.failed("judging", exc)
                log.error(
                    "judging.failed_will_retry",
                    epoch=number,
                    error=str(exc) or repr(exc),
                    error_type=type(exc).__name__,
                    retry_in_s=delay,
                )
                await anyio.sleep(delay)
        svc.state.board.tick("judging")
