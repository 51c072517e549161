"""Duplicate detection within one competition, before judging.

Three rules run in order, each on the survivors of the previous one, and each keeps the result
committed first (lowest block, then lowest uid; an unknown block counts as later than any block):

1. same ``model_hash``;
2. same ``(namespace, name, revision)`` (only when all three are known);
3. any shared checkpoint hash: results are accepted greedily in (block, uid) order and one is
   dropped when a checkpoint hash of it was already claimed by an accepted result.

Results of unregistered hotkeys are dropped first. Unknown fields never drop a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence

from ._types import Dropped, DropReason, ModelResult

__all__ = ["dedup_results"]

_Key = tuple[float, int]


def dedup_results(
    competition: str, results: Sequence[ModelResult], uids: Mapping[str, int]
) -> tuple[tuple[ModelResult, ...], tuple[Dropped, ...]]:
    """Return the surviving results in (block, uid) order and what was dropped, and why."""
    dropped: list[Dropped] = []
    registered: list[ModelResult] = []
    for r in results:
        if r.hotkey in uids:
            registered.append(r)
        else:
            dropped.append(Dropped(competition, r.hotkey, None, DropReason.UNREGISTERED))

    def key(r: ModelResult) -> _Key:
        return (math.inf if r.block is None else r.block, uids[r.hotkey])

    ordered = sorted(registered, key=key)
    for reason, group_of in (
        (DropReason.SAME_MODEL_HASH, lambda r: r.model_hash),
        (DropReason.SAME_METADATA, lambda r: r.metadata),
    ):
        ordered = _first_per_group(competition, ordered, group_of, reason, uids, dropped)

    kept: list[ModelResult] = []
    owner: dict[str, ModelResult] = {}
    for r in ordered:
        claimants = [owner[h] for h in r.ckpt_hashes if h in owner]
        if claimants:
            first = min(claimants, key=key).hotkey
            reason = DropReason.SHARED_CHECKPOINT
            dropped.append(Dropped(competition, r.hotkey, uids[r.hotkey], reason, first))
            continue
        kept.append(r)
        for h in r.ckpt_hashes:
            owner[h] = r
    dropped.sort(key=lambda d: (list(DropReason).index(d.reason), d.hotkey))
    return tuple(kept), tuple(dropped)


def _first_per_group(
    competition: str,
    ordered: list[ModelResult],
    group_of: Callable[[ModelResult], Hashable | None],
    reason: DropReason,
    uids: Mapping[str, int],
    dropped: list[Dropped],
) -> list[ModelResult]:
    """Keep the first result of each group (input is in (block, uid) order); ``None`` = alone."""
    first: dict[Hashable, str] = {}
    kept: list[ModelResult] = []
    for r in ordered:
        group = group_of(r)
        if group is None:
            kept.append(r)
        elif group in first:
            dropped.append(Dropped(competition, r.hotkey, uids[r.hotkey], reason, first[group]))
        else:
            first[group] = r.hotkey
            kept.append(r)
    return kept
