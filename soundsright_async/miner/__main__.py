"""Entry point: ``soundsright-miner`` or ``python -m soundsright_async.miner``.

The only place the miner reads argv and the environment (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``)
and configures logging. Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or a passed
``--check``; 1 when the daemon could not start or failed, or a ``--check`` of the chain or the
endpoint failed; 2 for a config problem (one line).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._exceptions import ConfigError
from ..cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, print_json
from ..logs import configure_logging
from ..runtime._node import run_main
from ._check import Check, chain_checks
from ._setup import MinerSetup, prepare, run_daemon

__all__ = ["main"]

PROG = "soundsright-miner"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="SoundsRight miner daemon: keeps the model committed and the endpoint "
        "published, answers validators and stores their Feedback.",
    )
    p.add_argument("--config", type=Path, default=Path("config/miner.toml"), metavar="FILE")
    p.add_argument(
        "--check",
        action="store_true",
        help="check the config, the wallet's hotkey and the data dir, then the chain (the subnet "
        "exists, the hotkey is registered) and that the endpoint answers; exit 1 if one fails",
    )
    p.add_argument("--json", action="store_true", help="with --check: print the summary as JSON")
    return p


def _summary(setup: MinerSetup, checks: list[Check]) -> dict[str, object]:
    return {
        "role": "miner",
        "config": str(setup.config),
        "ok": all(c.ok for c in checks),
        "checks": {c.name: {"ok": c.ok, "message": c.message} for c in checks},
        "hotkey": setup.hotkey.ss58_address,
        "commitment": setup.commitment,
        "endpoint": setup.endpoint,
        "settings": setup.settings.model_dump(mode="json"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        setup = prepare(args.config)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"{PROG}: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    if args.check or args.json:
        checks = asyncio.run(chain_checks(setup))
        if args.json:
            print_json(_summary(setup, checks))
        else:
            print(f"{PROG}: {args.config}: ok; hotkey {setup.hotkey.ss58_address}")
            print(f"{PROG}: commitment {setup.commitment}; endpoint {setup.endpoint}")
            for c in checks:
                print(f"{PROG}: {'ok' if c.ok else 'FAILED'}: {c.message}")
        return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED
    log_settings = setup.settings.logging
    configure_logging(log_settings.format, log_settings.level)
    return run_main(PROG, "miner", lambda: run_daemon(setup, env=os.environ))


if __name__ == "__main__":
    sys.exit(main())
