"""Start-up checks that turn into one-line config errors (exit 2), and the daemon's outer shell.

``prepare`` loads the config, then checks what the loader cannot: the wallet's hotkey, the
published address, the localnet file and a writable data dir. ``run_daemon`` opens the chain,
runs the ``Miner`` and closes the chain within a deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from .._exceptions import ConfigError
from ..chain import open_chain
from ..chain._values import format_endpoint
from ..config import MinerSettings, load_miner_settings
from ..protocol import commitment_hash
from ..runtime import SdNotifier
from ..runtime._node import check_node
from ..wallet import Hotkey
from ._daemon import Miner

__all__ = ["MinerSetup", "prepare", "run_daemon"]

log = structlog.get_logger(__name__)
CHAIN_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class MinerSetup:
    config: Path
    settings: MinerSettings
    hotkey: Hotkey
    commitment: str
    endpoint: str
    """``ip:port`` to publish (``port`` is the listen port when it is 0 until bound)."""


def prepare(config: Path) -> MinerSetup:
    """Everything the daemon needs before it starts; ``ConfigError`` (one line) otherwise."""
    settings = load_miner_settings(config)
    file = str(config)
    srv = settings.server
    ip = srv.published_ip()
    if ip is None:
        raise ConfigError(
            f"required when server.host is {srv.host}: the address validators reach this "
            "miner at (it is published on chain)",
            file=file,
            key="server.external_ip",
        )
    port = srv.external_port or srv.port
    endpoint = format_endpoint(ip, port) if port else f"{ip}:<bound port>"
    hotkey = check_node(settings, file)
    m = settings.model
    commitment = commitment_hash(
        namespace=m.namespace,
        name=m.name,
        revision=m.revision,
        hotkey=hotkey.ss58_address,
        competition=m.competition,
    )
    return MinerSetup(config, settings, hotkey, commitment, endpoint)


async def run_daemon(setup: MinerSetup, *, env: Mapping[str, str]) -> None:
    """Run until SIGTERM/SIGINT, then close the chain client (time-boxed)."""
    s = setup.settings
    chain = open_chain(s.chain, netuid=s.netuid, hotkey=setup.hotkey)
    try:
        miner = Miner(
            s,
            hotkey=setup.hotkey,
            chain=chain,
            notifier=SdNotifier.from_env(env),
            handle_signals=True,
        )
        await miner.run()
    finally:
        with anyio.move_on_after(CHAIN_CLOSE_TIMEOUT_S, shield=True) as scope:
            await chain.aclose()
        if scope.cancelled_caught:
            log.warning("chain.close_timeout", timeout_s=CHAIN_CLOSE_TIMEOUT_S)
        else:
            log.info("chain.closed")
