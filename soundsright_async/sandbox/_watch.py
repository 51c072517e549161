"""Helpers for downloads: a dedicated worker thread, and a size watch over a download directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from ._errors import ModelRejected

__all__ = ["run_in_own_thread", "tree_bytes", "watch_size"]

T = TypeVar("T")


def tree_bytes(root: Path) -> int:
    """Bytes of every non-directory under ``root`` (``lstat`` sizes; links are not followed)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    else:
                        total += st.st_size
        except FileNotFoundError:  # a directory that the download removed meanwhile
            continue
    return total


def run_in_own_thread(fn: Callable[[], T], *, name: str) -> asyncio.Future[T]:
    """Run blocking ``fn`` in a new thread and return a future for its result.

    Unlike ``asyncio.to_thread`` this does not borrow a worker of the loop's default executor: a
    download abandoned at its deadline keeps its own thread until it notices and stops, and
    cannot starve other ``to_thread`` users (hashing, file walks) meanwhile.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def _deliver(ok: bool, value: object) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)

    def _main() -> None:
        try:
            result: object = fn()
            ok = True
        except BaseException as exc:
            result, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_deliver, ok, result)

    threading.Thread(target=_main, name=name).start()
    return future


async def watch_size(
    work: Awaitable[T],
    root: Path,
    cap: int,
    on_exceeded: Callable[[], None],
    *,
    interval: float = 0.2,
) -> T:
    """Await ``work`` while checking that ``root`` holds at most ``cap`` bytes.

    On overflow ``on_exceeded()`` is called (it must stop the download) and ``ModelRejected``
    (``too_large``) is raised. Cancelling this coroutine cancels ``work``.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            used = await asyncio.to_thread(tree_bytes, root)
            if used > cap:
                on_exceeded()
                raise ModelRejected(
                    "too_large", f"the download grew past {cap} bytes ({used} bytes on disk)"
                )
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
