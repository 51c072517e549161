"""Entry point: ``soundsright-validator`` or ``python -m soundsright_async.validator``.

The only place the validator reads argv and the environment (``NOTIFY_SOCKET``,
``WATCHDOG_USEC``, secrets) and configures logging. Exit codes: 0 after a clean shutdown
(SIGTERM/SIGINT) or a passed ``--check``; 1 when the daemon could not start or failed; 2 for a
config problem (one line; systemd does not restart it: ``RestartPreventExitStatus=2``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._exceptions import ConfigError
from ..cli._common import EXIT_OK, EXIT_USAGE, print_json
from ..logs import configure_logging
from ..runtime._node import run_main

__all__ = ["main"]

PROG = "soundsright-validator"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="SoundsRight validator daemon: runs the competition epochs (datasets, "
        "discovery, sandboxed benchmarks, judging, weights, Feedback). See docs/validator.md.",
    )
    p.add_argument("--config", type=Path, default=Path("config/validator.toml"), metavar="FILE")
    p.add_argument(
        "--check",
        action="store_true",
        help="check the config, the wallet's hotkey and the data dir, then exit",
    )
    p.add_argument("--json", action="store_true", help="with --check: print the summary as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ._setup import prepare, run_daemon

    try:
        setup = prepare(args.config)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"{PROG}: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    if args.check or args.json:
        summary = {
            "role": "validator",
            "config": str(args.config),
            "ok": True,
            "hotkey": setup.hotkey.ss58_address,
            "settings": setup.settings.model_dump(mode="json"),
        }
        if args.json:
            print_json(summary)
        else:
            print(f"{PROG}: {args.config}: ok; hotkey {setup.hotkey.ss58_address}")
        return EXIT_OK
    log_settings = setup.settings.logging
    configure_logging(log_settings.format, log_settings.level)
    return run_main(PROG, "validator", lambda: run_daemon(setup, env=os.environ))


if __name__ == "__main__":
    sys.exit(main())
