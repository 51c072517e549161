"""Shared start-up of the daemons (``soundsright-validator``, ``soundsright-miner``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._exceptions import ConfigError
from .cli._common import EXIT_OK, EXIT_USAGE, print_json
from .cli.config_cmd import Role, check_config

__all__ = ["daemon_main"]


def daemon_main(role: Role, argv: Sequence[str] | None, default_config: str) -> int:
    prog = f"soundsright-{role}"
    parser = argparse.ArgumentParser(prog=prog, description=f"SoundsRight {role} daemon.")
    parser.add_argument("--config", type=Path, default=Path(default_config), metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print the config check as JSON")
    args = parser.parse_args(argv)
    try:
        report = check_config(role, args.config)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"{prog}: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    notice = (
        f"The {role} daemon is not implemented yet: this release only checks its configuration."
    )
    if args.json:
        print_json({**report, "daemon": "not implemented", "notice": notice})
    else:
        print(f"{prog}: configuration {args.config} is valid.")
        print(f"{prog}: {notice}")
    return EXIT_OK
