"""Plain values the ``Chain`` port returns: blocks, the metagraph, commitments, write results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Block", "Commitment", "Metagraph", "Neuron", "WriteResult", "WriteStatus"]


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: str


@dataclass(frozen=True, slots=True)
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    stake_tao: float
    """TAO staked to the hotkey."""
    stake_alpha: float
    """Total stake weight in alpha of the subnet (what validator stake minimums compare to)."""
    validator_permit: bool
    endpoint: str | None
    """``ip:port`` published by the hotkey (``[v6]:port`` for IPv6), or None."""


@dataclass(frozen=True, slots=True)
class Metagraph:
    netuid: int
    block: int
    neurons: tuple[Neuron, ...]
    _by_hotkey: dict[str, Neuron] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, n in enumerate(self.neurons):
            if n.uid != i:
                raise ValueError(
                    f"metagraph neurons must be ordered by uid; got uid {n.uid} at {i}"
                )
        object.__setattr__(self, "_by_hotkey", {n.hotkey: n for n in self.neurons})

    def by_hotkey(self, hotkey: str) -> Neuron | None:
        return self._by_hotkey.get(hotkey)

    @property
    def hotkeys(self) -> list[str]:
        return [n.hotkey for n in self.neurons]

    def __len__(self) -> int:
        return len(self.neurons)


@dataclass(frozen=True, slots=True)
class Commitment:
    hotkey: str
    uid: int | None
    """None when the hotkey is no longer registered."""
    data: str
    """The raw commitment bytes as UTF-8 text (``0x``-hex when they are not UTF-8)."""
    block: int
    """The block the commitment landed in."""


class WriteStatus(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of a signed write. Transport failures raise instead (``ChainUnavailableError``)."""

    status: WriteStatus
    reason: str = ""
    """Empty on success; otherwise the chain's error name and message."""
    block: int | None = None
    reveal_round: int | None = None
    """For weights on a commit-reveal subnet: the drand round at which the chain reveals them."""

    @property
    def ok(self) -> bool:
        return self.status is WriteStatus.OK

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def success(cls, block: int | None = None, reveal_round: int | None = None) -> WriteResult:
        return cls(WriteStatus.OK, block=block, reveal_round=reveal_round)

    @classmethod
    def rejected(cls, reason: str) -> WriteResult:
        return cls(WriteStatus.REJECTED, reason=reason)

    @classmethod
    def rate_limited(cls, reason: str) -> WriteResult:
        return cls(WriteStatus.RATE_LIMITED, reason=reason)
