"""Metagraph sync: who is registered, with what permit and endpoint; a uid whose hotkey changed
loses its old hotkey's candidates and results of unjudged epochs."""

from __future__ import annotations

import structlog

from ._context import Services

__all__ = ["sync_metagraph"]

log = structlog.get_logger(__name__)


async def sync_metagraph(svc: Services) -> float | None:
    state = svc.state
    mg = await svc.chain.metagraph()
    previous = state.metagraph
    if previous is not None:
        now = {n.hotkey for n in mg.neurons}
        for old in previous.neurons:
            if old.hotkey not in now:
                dropped = await svc.store.drop_hotkey(old.hotkey, "deregistered")
                log.info("metagraph.hotkey_left", uid=old.uid, hotkey=old.hotkey, dropped=dropped)
    state.metagraph = mg
    state.synced.bump()
    if mg.by_hotkey(state.hotkey) is None:
        log.warning(
            "validator.not_registered",
            hotkey=state.hotkey,
            netuid=mg.netuid,
            hint="register the hotkey on the subnet; weights cannot be set until then",
        )
    log.debug("metagraph.synced", block=mg.block, neurons=len(mg))
    return None
