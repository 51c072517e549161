"""Start-up shared by both daemons: the checks every node needs before it runs, and the
process-level ``main`` around the event loop (exit codes, one-line failures)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from .._exceptions import ConfigError

if TYPE_CHECKING:
    from ..config import _NodeSettings
    from ..wallet import Hotkey

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "check_node", "run_main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def check_node(settings: _NodeSettings, file: str) -> Hotkey:
    """What the loader cannot check: the localnet file exists, the wallet's hotkey loads, the
    data dir is writable. ``ConfigError`` (one line, exit 2) otherwise; returns the hotkey."""
    from ..wallet import WalletError, load_hotkey_from

    chain = settings.chain
    path = chain.localnet_path
    if chain.network == "localnet" and path is not None and not path.is_file():
        raise ConfigError(
            f"no localnet file at {path} (create it with `soundsright localnet init`)",
            file=file,
            key="chain.localnet_path",
        )
    try:
        hotkey = load_hotkey_from(settings.wallet)
    except WalletError as exc:
        raise ConfigError(str(exc), file=file, key="wallet") from None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {settings.data_dir}: {exc.strerror}", file=file, key="data_dir"
        ) from None
    if not os.access(settings.data_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"{settings.data_dir} is not writable", file=file, key="data_dir")
    return hotkey


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def run_main(prog: str, role: str, daemon: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run the daemon's event loop; 0 after a clean shutdown, 2 for a configuration problem
    found while starting, 1 (with one line on stderr and the error in the log) when it could
    not start or failed."""
    try:
        asyncio.run(daemon())
    except Exception as exc:  # could not start (port in use, engine gone, ...) or a bug
        leaf = _first_leaf(exc)
        if isinstance(leaf, ConfigError):  # found at start-up (e.g. limits the host cannot fit)
            print(f"{prog}: error: {leaf}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prog}: failed: {leaf}", file=sys.stderr)
        structlog.get_logger(__name__).error(
            f"{role}.failed",
            error=repr(leaf),
            exc_info=leaf if not isinstance(leaf, OSError) else None,
        )
        return EXIT_FAILED
    return EXIT_OK
