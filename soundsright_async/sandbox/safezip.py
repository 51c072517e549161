"""Extract a model's output zip safely: every member is checked before anything is written.

Refused (``UnsafeZip`` with a reason): a member with an absolute path, a drive letter, a
backslash, a NUL byte or a ``..`` component; a symlink or any non-regular member; an encrypted
member; duplicate names; more members than allowed; a declared total size over the cap; a
member that decompresses to more than it declared (the CRC check fails). Directories are
skipped; files are written with ``O_EXCL | O_NOFOLLOW`` below the destination only.
"""

from __future__ import annotations

import os
import posixpath
import stat
import zipfile
from pathlib import Path

__all__ = ["UnsafeZip", "extract_zip"]

_CHUNK = 1 << 20


class UnsafeZip(Exception):
    """The archive breaks a rule; ``reason`` is a short code, the message says which member."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


def _check_name(name: str) -> str:
    if "\x00" in name or "\\" in name:
        raise UnsafeZip("unsafe_path", f"member {name!r} has a NUL byte or a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeZip("absolute_path", f"member {name!r} is an absolute path")
    parts = [p for p in name.rstrip("/").split("/")]
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeZip("path_traversal", f"member {name!r} has an empty, '.' or '..' component")
    return posixpath.normpath(name)


def _plan(zf: zipfile.ZipFile, max_members: int, max_bytes: int) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > max_members:
        raise UnsafeZip("too_many_members", f"{len(infos)} members (at most {max_members})")
    seen: set[str] = set()
    total = 0
    files: list[zipfile.ZipInfo] = []
    for info in infos:
        name = _check_name(info.filename)
        mode = (info.external_attr >> 16) & 0xFFFF
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type recorded (plain file)
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise UnsafeZip("not_regular", f"member {name!r} is {kind}")
        if info.flag_bits & 0x1:
            raise UnsafeZip("encrypted", f"member {name!r} is encrypted")
        if name.lower() in seen:
            raise UnsafeZip("duplicate", f"member {name!r} appears twice")
        seen.add(name.lower())
        total += info.file_size
        if total > max_bytes:
            raise UnsafeZip("too_large", f"members declare over {max_bytes} bytes in total")
        files.append(info)
    return files


def extract_zip(archive: Path, dest: Path, *, max_members: int, max_bytes: int) -> list[str]:
    """Check every member of ``archive`` and, only if all pass, extract the regular files into
    the existing directory ``dest``. Returns the relative paths written. Blocking."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeZip("not_a_zip", f"not a zip archive: {exc}") from None
    written: list[str] = []
    with zf:
        files = _plan(zf, max_members, max_bytes)
        base = os.path.realpath(dest)
        for info in files:
            name = posixpath.normpath(info.filename)
            target = os.path.join(base, *name.split("/"))
            if os.path.commonpath([base, os.path.realpath(os.path.dirname(target))]) != base:
                raise UnsafeZip("path_traversal", f"member {name!r} leaves the destination")
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            budget = info.file_size
            try:
                with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                    while chunk := src.read(min(_CHUNK, budget + 1)):
                        budget -= len(chunk)
                        if budget < 0:
                            raise UnsafeZip("too_large", f"member {name!r} exceeds its size")
                        out.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
                raise UnsafeZip("bad_member", f"member {name!r} is corrupt: {exc}") from None
            except NotImplementedError as exc:
                raise UnsafeZip("bad_member", f"member {name!r}: {exc}") from None
            written.append(name)
    return written
