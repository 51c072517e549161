"""``soundsright judge``: replay an epoch's judging from a JSON file (winners, scores, weights)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..validator.judging import (
        EpochInput,
        Judgement,
    )

from .._exceptions import InputError
from ..competitions import COMPETITIONS
from ..validator.judging._types import ExclusionReason, WeightsRule
from ._common import EXIT_OK, print_json

__all__ = ["load_epoch_file", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "judge",
        help="decide winners, scores and weights from benchmark results",
        description=(
            "Judge one epoch from a JSON file: drop copies across competitions, exclude "
            "validator-permit holders and results that do not beat the unprocessed input, pick "
            "each (competition, metric) winner with the improvement threshold, split the "
            "remainder pools, and normalise the scores to weights (none when no uid can be "
            "paid). See docs/judging.md for the input format."
        ),
    )
    p.add_argument("--input", required=True, metavar="FILE", help="epoch JSON ('-' = stdin)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..validator.judging import judge_epoch, judgement_to_dict

    epoch = load_epoch_file(args.input)
    judgement = judge_epoch(epoch)
    if args.json:
        print_json(judgement_to_dict(judgement))
    else:
        _print_summary(epoch, judgement)
    return EXIT_OK


def load_epoch_file(source: str) -> EpochInput:
    """Read and parse the epoch file; every problem is an ``InputError`` naming file and field."""
    from ..validator.judging import parse_epoch_json

    label = "<stdin>" if source == "-" else source
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).expanduser().read_bytes()
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None
    try:
        return parse_epoch_json(raw)
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None


def _print_summary(epoch: EpochInput, j: Judgement) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ..validator.judging import Rule

    console = Console()
    for comp in COMPETITIONS:
        decisions = [d for d in j.decisions if d.competition == comp.name]
        if all(d.rule in (Rule.NO_CANDIDATE, Rule.PREVIOUS_EXCLUDED) for d in decisions):
            console.print(f"{comp.name}: no candidates, nothing paid")
            continue
        table = Table(title=comp.name, box=box.SIMPLE, title_justify="left")
        table.add_column("metric")
        table.add_column("winner")
        table.add_column("average", justify="right")
        table.add_column("rule")
        table.add_column("share", justify="right")
        table.add_column("remainder", justify="right")
        for d in decisions:
            if d.winner is None or d.winner_uid is None:
                table.add_row(d.metric.value, "-", "-", d.rule.value, "0", "-")
                continue
            paid = math.fsum(r.share for r in d.remainder)
            to = sum(r.share > 0 for r in d.remainder)
            table.add_row(
                d.metric.value,
                f"{d.winner_uid} {_short(d.winner.hotkey)}",
                f"{d.winner.average:.6g}",
                d.rule.value,
                f"{d.winner_share:g}",
                f"{paid:.4f} to {to}" if to else f"{d.remainder_unpaid:g} unpaid",
            )
        console.print(table)

    rule = j.weights_rule
    title = "scores and weights" + ("" if rule is WeightsRule.SCORES else f" ({rule.value})")
    scored = Table(title=title, box=box.SIMPLE, title_justify="left")
    for col in ("uid", "hotkey", "score", "weight"):
        scored.add_column(col, justify="left" if col == "hotkey" else "right")
    weights = j.weights or (0.0,) * len(j.scores)
    for uid, (score, weight) in enumerate(zip(j.scores, weights, strict=True)):
        if score > 0 or weight > 0:
            scored.add_row(str(uid), _short(epoch.hotkeys[uid]), f"{score:.6f}", f"{weight:.6f}")
    console.print(scored)
    if rule is WeightsRule.FALLBACK:
        targets = sum(w > 0 for w in j.weights)
        console.print(f"no miner scored: weights follow the fallback ({targets} uids)")
    elif rule is WeightsRule.BURN_UID:
        console.print(f"no uid can be paid: all weight to burn uid {epoch.burn_uid}")
    elif rule is WeightsRule.NO_PAYABLE_UID:
        console.print("no uid can be paid: set no weights this epoch")
    for name, hotkey, reason in _excluded_everywhere(j):
        console.print(f"excluded {name} {hotkey}: {reason.value}", soft_wrap=True)
    for gone in j.dropped:
        kept = ""
        if gone.kept:
            where = (
                "" if gone.kept_competition == gone.competition else f" in {gone.kept_competition}"
            )
            kept = f", keeps {gone.kept}{where}"
        line = f"dropped {gone.competition} {gone.hotkey}: {gone.reason.value}{kept}"
        console.print(line, soft_wrap=True)


_WHOLE_COMPETITION = (ExclusionReason.VALIDATOR_PERMIT, ExclusionReason.NO_IMPROVEMENT)


def _excluded_everywhere(j: Judgement) -> list[tuple[str, str, ExclusionReason]]:
    """Exclusions that apply to every metric of a competition, once per (competition, hotkey)."""
    seen: dict[tuple[str, str], ExclusionReason] = {}
    for d in j.decisions:
        for x in d.excluded:
            if x.reason in _WHOLE_COMPETITION:
                seen.setdefault((d.competition, x.hotkey), x.reason)
    return [(comp, hotkey, reason) for (comp, hotkey), reason in seen.items()]


def _short(hotkey: str) -> str:
    return hotkey if len(hotkey) <= 12 else hotkey[:10] + "…"
