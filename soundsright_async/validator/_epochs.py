"""Pure decisions of the competition calendar: epochs, seeds, candidate acceptance, run order.

Epoch *e* covers blocks ``[anchor + e*L, anchor + (e+1)*L)`` (``L`` = ``epoch_blocks``). Its seed is
derived from the hash of its start block, so every validator, and every restart, gets the same
seed; a model counts for epoch *e* only if its commitment landed before that block (it was fixed
before the seed was known).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..competitions import Competition
from ..protocol import commitment_hash

__all__ = [
    "CandidateKey",
    "EpochClock",
    "Rejection",
    "acceptance",
    "run_order",
    "seed_from_hash",
]

_SEED_DOMAIN = b"soundsright/epoch-seed/v1:"


@dataclass(frozen=True, slots=True)
class EpochClock:
    epoch_blocks: int
    anchor_block: int = 0
    stop_margin_blocks: int = 0

    def __post_init__(self) -> None:
        if self.epoch_blocks < 2:
            raise ValueError("epoch_blocks must be at least 2")
        if not 0 <= self.stop_margin_blocks < self.epoch_blocks:
            raise ValueError("stop_margin_blocks must be in [0, epoch_blocks)")

    def epoch_of(self, block: int) -> int | None:
        """The epoch ``block`` belongs to; None before the anchor."""
        if block < self.anchor_block:
            return None
        return (block - self.anchor_block) // self.epoch_blocks

    def start(self, epoch: int) -> int:
        return self.anchor_block + epoch * self.epoch_blocks

    def end(self, epoch: int) -> int:
        """The first block after the epoch (the next epoch's start)."""
        return self.start(epoch + 1)

    def blocks_left(self, epoch: int, block: int) -> int:
        return max(0, self.end(epoch) - block)

    def may_start_run(self, epoch: int, block: int) -> bool:
        """A new benchmark may start: the epoch is running and not within the stop margin."""
        return self.start(epoch) <= block < self.end(epoch) - self.stop_margin_blocks


def seed_from_hash(block_hash: str) -> int:
    """The epoch seed (0 .. 2**32-1) from its start block's hash: SHA-256 over a domain tag and
    the lower-case hash text, first four bytes big-endian."""
    digest = hashlib.sha256(_SEED_DOMAIN + block_hash.strip().lower().encode()).digest()
    return int.from_bytes(digest[:4], "big")


Rejection = str
"""A reason a discovered model is no candidate."""
NO_COMMITMENT: Rejection = "no_commitment"
COMMITMENT_MISMATCH: Rejection = "commitment_mismatch"
COMMITTED_AFTER_EPOCH_START: Rejection = "committed_after_epoch_start"


def acceptance(
    *,
    hotkey: str,
    competition: Competition,
    namespace: str,
    name: str,
    revision: str,
    commitment: str | None,
    commitment_block: int | None,
    epoch_start: int,
) -> Rejection | None:
    """None when the answer is a candidate for the epoch starting at ``epoch_start``; otherwise
    the reason: no commitment on chain, one that does not match the answer, or one that landed
    at or after the epoch's start block."""
    if commitment is None or commitment_block is None:
        return NO_COMMITMENT
    wanted = commitment_hash(
        namespace=namespace, name=name, revision=revision, hotkey=hotkey, competition=competition
    )
    if commitment.lower() != wanted:
        return COMMITMENT_MISMATCH
    if commitment_block >= epoch_start:
        return COMMITTED_AFTER_EPOCH_START
    return None


class CandidateKey(Protocol):
    @property
    def hotkey(self) -> str: ...
    @property
    def uid(self) -> int: ...
    @property
    def commitment_block(self) -> int: ...


C = TypeVar("C", bound=CandidateKey)


def run_order(candidates: Iterable[C], previous_winners: set[str]) -> list[C]:
    """Previous winners first (their titles are at stake), then the earliest commitment, then
    the lowest uid."""
    return sorted(
        candidates, key=lambda c: (c.hotkey not in previous_winners, c.commitment_block, c.uid)
    )
