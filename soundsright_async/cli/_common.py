"""Helpers shared by the CLI commands: exit codes, output, argument types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..competitions import Competition, get_competition

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "competition_arg",
    "existing_dir",
    "print_json",
    "progress_bar",
    "run_async",
    "stderr_is_tty",
]

T = TypeVar("T")
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and the answer is "no" (a check failed)
EXIT_USAGE = 2  # bad arguments, bad config, unusable input


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` (asyncio is imported only by the commands that need it)."""
    import asyncio

    return asyncio.run(main)


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


@contextmanager
def progress_bar(description: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A transient rich progress bar on stderr; yields ``update(done, total)`` or ``None`` when
    disabled (not a TTY, or JSON output)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
