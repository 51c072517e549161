"""The chain port and its adapters: ``open_chain`` picks one from ``ChainSettings``.

``network = "localnet"`` opens the embedded SQLite dev chain (``chain.localnet``); anything else
(``finney``, ``test``, ``local``, a ``ws://`` URL) the bittensor v11 adapter (``chain.subtensor``).
``chain.fake`` is the in-memory double for unit tests.
"""

from __future__ import annotations

from ..config import ChainSettings
from ..wallet import Hotkey
from .base import Chain
from .errors import ChainError, ChainUnavailableError, SubnetNotFoundError
from .types import Block, Commitment, Metagraph, Neuron, WriteResult, WriteStatus

__all__ = [
    "Block",
    "Chain",
    "ChainError",
    "ChainUnavailableError",
    "Commitment",
    "Metagraph",
    "Neuron",
    "SubnetNotFoundError",
    "WriteResult",
    "WriteStatus",
    "open_chain",
]


def open_chain(settings: ChainSettings, *, netuid: int, hotkey: Hotkey) -> Chain:
    """The adapter for ``settings.network``; connections open lazily on first use."""
    if settings.network == "localnet":
        from .localnet import LocalnetChain

        assert settings.localnet_path is not None  # ChainSettings enforces it
        return LocalnetChain(
            settings.localnet_path,
            netuid=netuid,
            hotkey=hotkey,
            call_timeout_s=settings.call_timeout_s,
        )
    from .subtensor import SubtensorChain

    return SubtensorChain(
        network=settings.network,
        netuid=netuid,
        hotkey=hotkey,
        call_timeout_s=settings.call_timeout_s,
        retries=settings.retries,
        backoff_s=settings.backoff_s,
        backoff_max_s=settings.backoff_max_s,
    )
