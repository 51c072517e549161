"""Helpers shared by the CLI commands: exit codes, output, argument types."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from ..competitions import Competition, get_competition

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "competition_arg",
    "existing_dir",
    "print_json",
    "stderr_is_tty",
]

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and the answer is "no" (a check failed)
EXIT_USAGE = 2  # bad arguments, bad config, unusable input


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def competition_arg(value: str) -> Competition:
    try:
        return get_competition(value)
    except KeyError as exc:
        raise argparse.ArgumentTypeError(exc.args[0]) from None


def existing_dir(value: str) -> Path:
    """argparse type: a path that must be an existing directory."""
    p = Path(value).expanduser()
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: no such directory")
    return p


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
