"""The ``soundsright`` umbrella CLI. Each command lives in its own module with a ``register``
function; add new commands to ``_COMMANDS``. Only this package reads argv and configures logging
for one-shot commands.

Exit codes: 0 success, 1 the command ran and its check failed, 2 bad arguments, config or input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .._exceptions import ConfigError, InputError, SoundsrightError
from . import (
    commitment,
    config_cmd,
    dataset,
    demo,
    feedback,
    judge,
    localnet,
    model,
    report,
    score,
    wallet,
)
from ._common import EXIT_FAILED, EXIT_USAGE

__all__ = ["build_parser", "main"]

_COMMANDS = (
    score,
    config_cmd,
    judge,
    dataset,
    model,
    commitment,
    wallet,
    localnet,
    feedback,
    report,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundsright", description="SoundsRight subnet tools for validators and miners."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default="warning", choices=("debug", "info", "warning", "error")
    )
    parser.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..logs import configure_logging  # after parsing: --help never imports structlog

    configure_logging(args.log_format, args.log_level)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        for line in exc.lines():
            print(f"soundsright: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"soundsright: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SoundsrightError as exc:
        print(f"soundsright: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("soundsright: interrupted", file=sys.stderr)
        return 130
