"""Atomic dataset directories: build in a temporary sibling, rename into place when complete.

A crash or an error leaves at most a ``.NAME.partial-*`` sibling (removed on the error path),
never a half dataset under ``NAME``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..._exceptions import InputError

__all__ = ["CLEAN_DIR", "DEGRADED_DIR", "atomic_dataset_dir"]

CLEAN_DIR = "clean"
DEGRADED_DIR = "degraded"


@contextmanager
def atomic_dataset_dir(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory with ``clean/`` and ``degraded/``; on success it
    becomes ``final``. An existing ``final`` is an ``InputError`` unless ``overwrite``."""
    final = Path(final)
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists (pass overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        (tmp / CLEAN_DIR).mkdir()
        (tmp / DEGRADED_DIR).mkdir()
        yield tmp
        _fsync_dir(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.rename(final, old / final.name)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
