"""``soundsright report --epoch N``: a static HTML page of one epoch, from the validator's store."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._exceptions import InputError
from ._common import EXIT_OK

__all__ = ["register"]

STORE_FILE = "validator.sqlite"
SAMPLES_DIR = "samples"
"""Where a runner that keeps one enhanced file per result puts it (docs/dashboard.md)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write a static HTML report of one epoch (what this validator judged)",
        description=(
            "Reads the validator's state file and writes OUT/epoch-N.html: every candidate, the "
            "benchmark step timeline, metric charts with 95%% CIs against the unprocessed input, "
            "per-file score distributions, winners and weights, and spectrograms of a sample "
            "file while the epoch's dataset is still on disk. One file, no external resources."
        ),
    )
    p.add_argument("--epoch", type=int, required=True, metavar="N", help="the epoch number")
    p.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="output directory (default: .)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="validator config whose data_dir holds the state (default: config/validator.toml)",
    )
    where.add_argument("--data-dir", type=Path, metavar="DIR", help="the validator's data dir")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    from ..validator._epoch_report import build_report
    from ..validator._store import Store
    from ..validator.settings import load_validator_settings

    if args.data_dir is not None:
        data_dir = args.data_dir.expanduser()
    else:
        settings, _ = load_validator_settings(args.config or Path("config/validator.toml"))
        data_dir = settings.data_dir
    db = data_dir / STORE_FILE
    if not db.is_file():
        raise InputError(f"{db}: no validator state file there (is --data-dir right?)")
    if args.epoch < 0:
        raise InputError("--epoch must be 0 or more")

    async def go() -> Path:
        store = await Store(db).open()
        try:
            return await build_report(
                store, args.epoch, args.out.expanduser(), data_dir / SAMPLES_DIR
            )
        finally:
            await store.aclose()

    print(anyio.run(go))
    return EXIT_OK
