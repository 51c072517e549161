"""Metagraph sync: who is registered, with what permit and stake (feeds the caller policy)."""

from __future__ import annotations

import structlog

from ..chain import Chain
from ._state import MinerState

__all__ = ["sync_metagraph"]

log = structlog.get_logger(__name__)


async def sync_metagraph(chain: Chain, state: MinerState) -> None:
    """Read the metagraph once, publish it to the HTTP middleware and note our registration."""
    mg = await chain.metagraph()
    state.metagraph.update(mg)
    me = mg.by_hotkey(state.hotkey)
    if me is None and state.registered is not False:
        log.warning(
            "miner.not_registered",
            hotkey=state.hotkey,
            netuid=mg.netuid,
            hint="register the hotkey on the subnet; the miner keeps checking",
        )
    elif me is not None and (state.registered is not True or state.uid != me.uid):
        log.info("miner.registered", hotkey=state.hotkey, netuid=mg.netuid, uid=me.uid)
    state.registered = me is not None
    state.uid = None if me is None else me.uid
    state.last_sync = state.now()
    state.sync_block = mg.block
    state.synced.bump()
    log.debug(
        "metagraph.synced",
        block=mg.block,
        neurons=len(mg),
        validators=sum(n.validator_permit for n in mg.neurons),
    )
