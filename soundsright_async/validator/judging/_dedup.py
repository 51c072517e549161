"""Duplicate detection over a whole epoch (every competition at once), before judging.

Three rules run in order, each on the survivors of the previous one, and each keeps the result
committed first, whichever competition it was entered in (lowest block, then lowest uid, then
the competition's place in ``COMPETITIONS``; an unknown block counts as later than any block):

1. same ``model_hash``;
2. same ``(namespace, name, revision)`` (only when all three are known);
3. any shared checkpoint hash: results are accepted greedily in that order and one is dropped
   when a checkpoint hash of it was already claimed by an accepted result of another hotkey.

A hotkey never duplicates itself: its own results in several competitions all stay. Results of
unregistered hotkeys are dropped first. Unknown fields never drop a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence

from ...competitions import COMPETITIONS
from ._types import Dropped, DropReason, ModelResult

__all__ = ["dedup_epoch", "dedup_results"]

_RANK = {c.name: i for i, c in enumerate(COMPETITIONS)}
_Entry = tuple[str, ModelResult]  # (competition, result)


def dedup_results(
    competition: str, results: Sequence[ModelResult], uids: Mapping[str, int]
) -> tuple[tuple[ModelResult, ...], tuple[Dropped, ...]]:
    """One competition alone: the surviving results in (block, uid) order and what was dropped."""
    kept, dropped = dedup_epoch({competition: results}, uids)
    return kept[competition], dropped


def dedup_epoch(
    results: Mapping[str, Sequence[ModelResult]], uids: Mapping[str, int]
) -> tuple[dict[str, tuple[ModelResult, ...]], tuple[Dropped, ...]]:
    """Every competition's surviving results in (block, uid) order, and what was dropped and
    why (``kept`` / ``kept_competition`` name the result it duplicates)."""

    def comp_rank(name: str) -> tuple[int, str]:
        return (_RANK.get(name, len(_RANK)), name)

    def key(entry: _Entry) -> tuple[float, int, tuple[int, str]]:
        comp, r = entry
        return (math.inf if r.block is None else r.block, uids[r.hotkey], comp_rank(comp))

    dropped: list[Dropped] = []
    registered: list[_Entry] = []
    for comp, rs in results.items():
        for r in rs:
            if r.hotkey in uids:
                registered.append((comp, r))
            else:
                dropped.append(Dropped(comp, r.hotkey, None, DropReason.UNREGISTERED))

    ordered = sorted(registered, key=key)
    for reason, group_of in (
        (DropReason.SAME_MODEL_HASH, lambda r: r.model_hash),
        (DropReason.SAME_METADATA, lambda r: r.metadata),
    ):
        ordered = _first_per_group(ordered, group_of, reason, uids, dropped)

    survivors: list[_Entry] = []
    owner: dict[str, _Entry] = {}
    for comp, r in ordered:
        claimants = [
            owner[h] for h in r.ckpt_hashes if h in owner and owner[h][1].hotkey != r.hotkey
        ]
        if claimants:
            first_comp, first = min(claimants, key=key)
            dropped.append(
                Dropped(
                    comp,
                    r.hotkey,
                    uids[r.hotkey],
                    DropReason.SHARED_CHECKPOINT,
                    first.hotkey,
                    first_comp,
                )
            )
            continue
        survivors.append((comp, r))
        for h in r.ckpt_hashes:
            owner.setdefault(h, (comp, r))
    kept: dict[str, tuple[ModelResult, ...]] = {
        comp: tuple(r for c, r in survivors if c == comp) for comp in results
    }
    dropped.sort(
        key=lambda d: (comp_rank(d.competition), list(DropReason).index(d.reason), d.hotkey)
    )
    return kept, tuple(dropped)


def _first_per_group(
    ordered: list[_Entry],
    group_of: Callable[[ModelResult], Hashable | None],
    reason: DropReason,
    uids: Mapping[str, int],
    dropped: list[Dropped],
) -> list[_Entry]:
    """Keep the first result of each group (input is in commitment order) and the same hotkey's
    other results; ``None`` = alone."""
    first: dict[Hashable, _Entry] = {}
    kept: list[_Entry] = []
    for comp, r in ordered:
        group = group_of(r)
        if group is None:
            kept.append((comp, r))
            continue
        claimed = first.setdefault(group, (comp, r))
        if claimed[1].hotkey == r.hotkey:
            kept.append((comp, r))
        else:
            dropped.append(Dropped(comp, r.hotkey, uids[r.hotkey], reason, *_owner(claimed)))
    return kept


def _owner(entry: _Entry) -> tuple[str, str]:
    comp, r = entry
    return r.hotkey, comp
