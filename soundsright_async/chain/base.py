"""The ``Chain`` port: everything the daemons need from the chain, for one subnet and one hotkey.

Adapters: ``chain.subtensor`` (bittensor v11), ``chain.localnet`` (embedded SQLite dev chain) and
``chain.fake`` (in memory, for unit tests). ``tests/test_chain_contract.py`` runs one suite
against all three.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType

from ..protocol import VERSION_KEY
from .types import Block, Commitment, Metagraph, WriteResult

__all__ = ["Chain"]


class Chain(ABC):
    """Reads raise ``ChainError``; writes are signed by our hotkey and return a ``WriteResult``."""

    netuid: int
    hotkey: str
    """Our hotkey ss58 (the signer of every write)."""

    @abstractmethod
    async def block(self) -> Block:
        """The current (head) block."""

    @abstractmethod
    async def block_hash(self, number: int) -> str:
        """The hash of block ``number`` (``0x``-hex); ``ChainError`` for a block not yet made."""

    @abstractmethod
    async def block_time(self) -> float:
        """Seconds per block."""

    @abstractmethod
    async def metagraph(self) -> Metagraph:
        """Every neuron of the subnet, ordered by uid."""

    @abstractmethod
    async def commitments(self) -> dict[str, Commitment]:
        """Every commitment on the subnet by hotkey, with the block it landed in."""

    @abstractmethod
    async def commit(self, data: bytes) -> WriteResult:
        """Write our raw commitment (replaces the previous one)."""

    @abstractmethod
    async def set_weights(
        self, weights: Mapping[int, float], *, version_key: int = VERSION_KEY
    ) -> WriteResult:
        """Set our weights, uid -> relative weight (only proportions matter)."""

    @abstractmethod
    async def serve(self, ip: str, port: int) -> WriteResult:
        """Publish our endpoint ``ip:port``."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections. Idempotent."""

    async def __aenter__(self) -> Chain:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
