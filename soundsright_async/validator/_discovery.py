"""Discovery: ask every neuron with an endpoint which model it enters, and accept the answers
that match their chain commitments made before the epoch started.

One pass asks every neuron at once (up to ``[discovery] concurrency`` neurons), each with signed
``POST /v3/model`` calls for the competitions this validator runs in turn until one answers (a
miner serves one competition; 404 means "not this one"), each call under its own total deadline.
A neuron that is unreachable is not asked again in the pass, so a pass over 256 neurons with
silent ones takes about one deadline (the reference asked one after another). A
hotkey's rejection is recorded with its reason until it becomes a candidate; a candidate stays a
candidate for the whole epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import structlog

from ..chain import Commitment, Neuron
from ..competitions import get_competition
from ..net import PeerError, PeerProtocolError, PeerRejectedError
from ..protocol import MODEL_PATH, ModelRequest, ModelResponse, parse_commitment
from ._context import Services
from ._epochs import acceptance
from ._store import CandidateRow, EpochRow

__all__ = ["DiscoveryOutcome", "discover"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DiscoveryOutcome:
    asked: int
    accepted: int
    rejected: int


async def discover(svc: Services) -> DiscoveryOutcome:
    """One pass over the metagraph for the current epoch."""
    state = svc.state
    epoch, mg = state.epoch, state.metagraph
    if epoch is None or mg is None:
        return DiscoveryOutcome(0, 0, 0)
    commitments = await svc.chain.commitments()
    known = {(c.hotkey, c.competition) for c in await svc.store.candidates(epoch.number)}
    known_hotkeys = {hk for hk, _ in known}
    targets = [n for n in mg.neurons if n.endpoint and n.hotkey != state.hotkey]
    limiter = anyio.CapacityLimiter(svc.settings.discovery.concurrency)
    found: list[CandidateRow] = []
    rejected: list[tuple[int, str, str, int, str, str]] = []

    async def one(neuron: Neuron) -> None:
        async with limiter:
            outcome = await _ask(svc, epoch, neuron, commitments.get(neuron.hotkey), known)
        if isinstance(outcome, CandidateRow):
            found.append(outcome)
        elif outcome is not None and neuron.hotkey not in known_hotkeys:
            # (a candidate stays one for the whole epoch; a later failure changes nothing)
            reason, competition, detail = outcome
            rejected.append((epoch.number, neuron.hotkey, competition, neuron.uid, reason, detail))

    async with anyio.create_task_group() as tg:
        for neuron in targets:
            tg.start_soon(one, neuron)
    # One transaction (one fsync) for the whole pass.
    inserted = await svc.store.discovered(found, rejected)
    for c, new in zip(found, inserted, strict=True):
        if new:
            state.metrics.discovery.labels("accepted").inc()
            log.info(
                "candidate.accepted",
                epoch=epoch.number,
                uid=c.uid,
                hotkey=c.hotkey,
                competition=c.competition,
                model=f"{c.namespace}/{c.name}@{c.revision}",
                commitment_block=c.commitment_block,
            )
    accepted = sum(inserted)
    if accepted:
        state.work.bump()
    log.info(
        "discovery.pass",
        epoch=epoch.number,
        asked=len(targets),
        accepted=accepted,
        rejected=len(rejected),
    )
    return DiscoveryOutcome(len(targets), accepted, len(rejected))


async def _ask(
    svc: Services,
    epoch: EpochRow,
    neuron: Neuron,
    commitment: Commitment | None,
    known: set[tuple[str, str]],
) -> CandidateRow | tuple[str, str, str] | None:
    """The candidate, or ``(reason, competition, detail)``; None when nothing is new."""
    metrics = svc.state.metrics.discovery
    if neuron.validator_permit:
        return "validator_permit", "*", "validators are not candidates"
    assert neuron.endpoint is not None
    d = svc.settings.discovery
    answers: dict[str, ModelResponse] = {}
    errors: list[tuple[str, str]] = []

    # A miner serves one competition: ask for each in turn until one answers. A neuron that is
    # unreachable or refuses us is not asked again this pass (a silent one costs one deadline).
    for competition in svc.state.competitions:
        try:
            answer = await svc.client.call(
                neuron.endpoint,
                MODEL_PATH,
                ModelRequest(competition=competition),
                ModelResponse,
                receiver=neuron.hotkey,
                deadline_s=d.call_timeout_s,
            )
        except PeerRejectedError as exc:
            errors.append(("refused", exc.problem))
            break
        except PeerProtocolError as exc:
            errors.append(("bad_answer", exc.problem))
            break
        except PeerError as exc:
            errors.append(("unreachable", exc.problem))
            break
        if answer is not None:
            answers[competition] = answer
            break
    if not answers:
        if errors:
            reason, detail = errors[0]
            metrics.labels(reason).inc()
            return reason, "*", detail
        metrics.labels("no_model").inc()
        return "no_model", "*", "no model for the competitions this validator runs"
    data = None if commitment is None else parse_commitment(commitment.data)
    block = None if commitment is None else commitment.block
    result: tuple[str, str, str] | None = None
    for competition, answer in sorted(answers.items()):
        if (neuron.hotkey, competition) in known:
            return None
        why = acceptance(
            hotkey=neuron.hotkey,
            competition=get_competition(competition),
            namespace=answer.hf_model_namespace,
            name=answer.hf_model_name,
            revision=answer.hf_model_revision,
            commitment=data,
            commitment_block=block,
            epoch_start=epoch.start_block,
        )
        model = f"{answer.hf_model_namespace}/{answer.hf_model_name}@{answer.hf_model_revision}"
        if why is not None:
            metrics.labels(why).inc()
            detail = model if block is None else f"{model}; commitment block {block}"
            result = result or (why, competition, detail)
            continue
        assert block is not None
        return CandidateRow(
            epoch=epoch.number,
            hotkey=neuron.hotkey,
            competition=competition,
            uid=neuron.uid,
            namespace=answer.hf_model_namespace,
            name=answer.hf_model_name,
            revision=answer.hf_model_revision,
            commitment_block=block,
            state="accepted",
        )
    return result
