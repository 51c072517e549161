"""``soundsright score``: score a directory of enhanced files against the clean references."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..audio.metrics import DatasetScore
    from ..audio.pool import ProgressCallback

from .._exceptions import InputError, PoolError, ScoringError
from ..competitions import Competition
from ._common import (
    EXIT_OK,
    competition_arg,
    existing_dir,
    print_json,
    progress_bar,
    run_async,
    stderr_is_tty,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "score",
        help="score enhanced audio against clean references",
        description=(
            "Score every clean *.wav against the enhanced file of the same name. Missing or bad "
            "enhanced files score the metric's floor and are listed."
        ),
    )
    p.add_argument("--competition", required=True, type=competition_arg, metavar="NAME")
    p.add_argument("--clean", required=True, type=existing_dir, metavar="DIR")
    p.add_argument("--enhanced", required=True, type=existing_dir, metavar="DIR")
    p.add_argument(
        "--noisy", type=existing_dir, metavar="DIR", help="degraded inputs (needed for SI-*)"
    )
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run, parser=p)


def run(args: argparse.Namespace) -> int:
    comp: Competition = args.competition
    if comp.needs_noisy and args.noisy is None:
        args.parser.error(f"--noisy is required for {comp.name} (its SI-* metrics need it)")
    if args.workers is not None and args.workers < 1:
        args.parser.error("--workers must be >= 1")
    with progress_bar("scoring", enabled=stderr_is_tty() and not args.json) as progress:
        result = run_async(_score(args, progress))
    if args.json:
        print_json(result.to_dict())
    else:
        _print_table(result)
    return EXIT_OK


async def _score(args: argparse.Namespace, progress: ProgressCallback | None) -> DatasetScore:
    from ..audio.pool import ScoringPool

    async with ScoringPool(workers=args.workers) as pool:
        try:
            return await pool.score(
                args.competition, args.clean, args.enhanced, args.noisy, progress=progress
            )
        except ExceptionGroup as group:
            raise _one_error(group) from None


def _one_error(group: ExceptionGroup[Exception]) -> Exception:
    """One line instead of a traceback: an unusable clean or degraded reference is bad input
    (exit 2); a pool failure is ours (exit 1); anything else stays the group it was."""
    leaves: list[Exception] = []
    stack: list[Exception] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, ExceptionGroup):
            stack[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if isinstance(exc, ScoringError) and not isinstance(exc, PoolError):
            return InputError(str(exc))
    for exc in leaves:
        if isinstance(exc, PoolError):
            return exc
    return group


def _print_table(result: DatasetScore) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result.competition} ({result.sample_rate} Hz, {result.files} files)")
    table.add_column("metric")
    table.add_column("average", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("failed files", justify="right")
    for metric, r in result.metrics.items():
        ci = (
            f"[{r.confidence_interval[0]:.4f}, {r.confidence_interval[1]:.4f}]"
            if (r.confidence_interval)
            else "-"
        )
        table.add_row(metric.value, f"{r.average:.4f}", ci, str(len(r.failed)))
    console.print(table)
    failures: dict[str, dict[str, list[str]]] = {}
    for metric, r in result.metrics.items():
        for name, reason in r.failed.items():
            failures.setdefault(name, {}).setdefault(reason, []).append(metric.value)
    for name in sorted(failures):
        for reason, metrics in failures[name].items():
            console.print(f"  {name}: {reason} (scored the floor for {', '.join(metrics)})")
