"""Commitment upkeep: keep the chain's commitment for our hotkey equal to the configured model.

Committing again moves the commit block (validators let the earliest block win a duplicate
model), so the miner only writes when the chain holds something else: nothing, another model, or
another revision. A rate-limited write waits ``rate_limit_wait_s``; a refused one backs off.
"""

from __future__ import annotations

import structlog

from ..chain import Chain, WriteStatus
from ..protocol import commitment_payload, parse_commitment
from ..runtime import RetryLater
from ._state import MinerState

__all__ = ["check_commitment"]

log = structlog.get_logger(__name__)


async def check_commitment(
    chain: Chain, state: MinerState, *, rate_limit_wait_s: float, confirm_after_s: float
) -> float | None:
    """One check (and at most one write). Returns the wait before the next check."""
    mine = (await chain.commitments()).get(state.hotkey)
    state.last_commitment_check = state.now()
    on_chain = None if mine is None else parse_commitment(mine.data)
    model = {
        "competition": state.competition,
        "model": f"{state.namespace}/{state.name}",
        "revision": state.revision,
    }
    if mine is not None and on_chain == state.commitment_wanted:
        if state.commitment_ok is not True or state.commitment_block != mine.block:
            log.info("commitment.confirmed", block=mine.block, commitment=on_chain, **model)
        state.commitment_ok = True
        state.commitment_block = mine.block
        return None
    state.commitment_ok = False
    log.info(
        "commitment.outdated" if mine is not None else "commitment.missing",
        on_chain=None if mine is None else (on_chain or mine.data[:80]),
        on_chain_block=None if mine is None else mine.block,
        wanted=state.commitment_wanted,
        **model,
    )
    result = await chain.commit(commitment_payload(state.commitment_wanted))
    state.count("commits_total", result=result.status.value)
    if result.ok:
        state.last_commit = state.now()
        state.commitment_ok = True
        state.commitment_block = result.block
        log.info("commitment.committed", block=result.block, commitment=state.commitment_wanted)
        return confirm_after_s  # read it back soon: the block it landed in is what counts
    if result.status is WriteStatus.RATE_LIMITED:
        raise RetryLater(f"commit rate-limited: {result.reason}", delay=rate_limit_wait_s)
    raise RetryLater(f"commit refused: {result.reason}")
