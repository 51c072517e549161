"""Atomic dataset directories: build in a temporary sibling, rename into place when complete.

A crash or an error leaves at most a ``.NAME.partial-*`` sibling (removed on the error path),
never a half dataset under ``NAME``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from ..._exceptions import InputError

__all__ = ["CLEAN_DIR", "DEGRADED_DIR", "atomic_dataset_dir", "atomic_dataset_dir_async"]

CLEAN_DIR = "clean"
DEGRADED_DIR = "degraded"


@contextmanager
def atomic_dataset_dir(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory with ``clean/`` and ``degraded/``; on success it
    becomes ``final``. An existing ``final`` is an ``InputError`` unless ``overwrite``."""
    tmp = begin_dataset_dir(final, overwrite=overwrite)
    try:
        yield tmp
        commit_dataset_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@asynccontextmanager
async def atomic_dataset_dir_async(final: Path, *, overwrite: bool = False) -> AsyncIterator[Path]:
    """``atomic_dataset_dir`` for the event loop: the file-system work (mkdir, fsync, rename,
    removal of a replaced dataset) runs in a thread."""
    tmp = await asyncio.to_thread(begin_dataset_dir, final, overwrite=overwrite)
    try:
        yield tmp
        await asyncio.to_thread(commit_dataset_dir, tmp, final)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, tmp, True))
        raise


def begin_dataset_dir(final: Path, *, overwrite: bool = False) -> Path:
    final = Path(final)
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists (pass overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        (tmp / CLEAN_DIR).mkdir()
        (tmp / DEGRADED_DIR).mkdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def commit_dataset_dir(tmp: Path, final: Path) -> None:
    """Make the complete ``tmp`` the dataset at ``final`` (replacing one that is there)."""
    final = Path(final)
    _fsync_dir(tmp)
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.rename(final, old / final.name)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
