"""Start-up checks that turn into one-line config errors (exit 2), and the daemon's outer shell.

``prepare`` loads the config, then checks what the loader cannot: the wallet's hotkey, the
localnet file, a writable data dir, a git hub path. ``run_daemon`` opens the chain, runs the
``Validator`` and closes the chain within a deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from .._exceptions import ConfigError
from ..chain import open_chain
from ..config import Secrets
from ..runtime import SdNotifier
from ..runtime._node import check_node
from ..wallet import Hotkey
from ._daemon import Validator
from .settings import ValidatorSettings, load_validator_settings

__all__ = ["ValidatorSetup", "prepare", "run_daemon"]

log = structlog.get_logger(__name__)
CHAIN_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ValidatorSetup:
    config: Path
    settings: ValidatorSettings
    secrets: Secrets
    hotkey: Hotkey


def prepare(config: Path, env: Mapping[str, str] | None = None) -> ValidatorSetup:
    """Everything the daemon needs before it starts; ``ConfigError`` (one line) otherwise."""
    settings, secrets = load_validator_settings(config, env)
    file = str(config)
    hotkey = check_node(settings, file)
    from ..audio.dataset.choice import resolve_sources

    try:
        choice = resolve_sources(
            settings.chain.network, settings.dataset, secrets.elevenlabs_api_key is not None
        )
    except ConfigError as exc:
        raise ConfigError(exc.problem, file=file, key=exc.key) from None
    if choice.offline and settings.chain.network in ("finney", "test"):
        log.warning(
            "dataset.offline_sources_on_a_real_network",
            network=settings.chain.network,
            offline=list(choice.offline),
            hint="set in [dataset] on purpose; other validators use the production sources",
        )
    for i, b in enumerate(settings.baseline.models):
        if b.path is not None and not (b.path / "Dockerfile").is_file():
            raise ConfigError(
                f"{b.path} is not a model directory (no Dockerfile)",
                file=file,
                key=f"baseline.models[{i}].path",
            )
    return ValidatorSetup(config, settings, secrets, hotkey)


async def run_daemon(setup: ValidatorSetup, *, env: Mapping[str, str]) -> None:
    """Run until SIGTERM/SIGINT, then close the chain client (time-boxed)."""
    s = setup.settings
    chain = open_chain(s.chain, netuid=s.netuid, hotkey=setup.hotkey)
    try:
        validator = Validator(
            s,
            setup.secrets,
            hotkey=setup.hotkey,
            chain=chain,
            notifier=SdNotifier.from_env(env),
            handle_signals=True,
        )
        await validator.run()
    finally:
        with anyio.move_on_after(CHAIN_CLOSE_TIMEOUT_S, shield=True) as scope:
            await chain.aclose()
        if scope.cancelled_caught:
            log.warning("chain.close_timeout", timeout_s=CHAIN_CLOSE_TIMEOUT_S)
