"""Extract a model's output zip safely: the archive is sized up from its end records before
``zipfile`` parses anything, and every member is checked before anything is written.

Refused (``UnsafeZip`` with a reason), in this order:

- ``not_a_zip``: no end-of-central-directory record, or ``zipfile`` cannot read it;
- ``too_many_members`` / ``central_directory_too_large``: the end record (or the zip64 one)
  declares more members than allowed, or a central directory over ``max_members`` x 1 KiB.
  ``zipfile`` reads the whole central directory into memory and builds an object per entry,
  so this is checked on the 22-byte (zip64: 56-byte) records, never on the parsed list;
- ``unsafe_path``, ``absolute_path``, ``path_traversal``: a NUL byte or backslash, an absolute
  path or drive letter, an empty, ``.`` or ``..`` component;
- ``name_too_long``: a path component over 255 bytes (UTF-8) or a name over 1024 bytes;
- ``not_regular``, ``encrypted``: a symlink or other non-regular member, an encrypted member;
- ``duplicate``: the same name twice (compared case-folded: case-insensitive filesystems);
- ``path_conflict``: a file that is also the directory of another member (``x`` and
  ``x/y.wav``), or a member named like the archive itself when it lies in the destination;
- ``too_large``: the declared sizes reach ``max_bytes`` (the cap is exclusive: the members must
  total *less than* ``max_bytes``), or a member inflates past its declared size;
- ``bad_member``: reading or writing a member failed (corrupt deflate stream, CRC mismatch,
  header mismatch, unsupported compression, disk error, ...).

Directories are skipped; files are written with ``O_EXCL | O_NOFOLLOW`` below the destination
only, and a failed extraction removes what it wrote. Any failure is an ``UnsafeZip``: nothing
else escapes ``extract_zip`` (it is a model's failed step, never a crash of the validator).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

__all__ = ["MAX_COMPONENT_BYTES", "MAX_NAME_BYTES", "UnsafeZip", "extract_zip", "zip_extent"]

_CHUNK = 1 << 20
MAX_COMPONENT_BYTES = 255
MAX_NAME_BYTES = 1024
CD_BYTES_PER_MEMBER = 1024
"""Central-directory budget per allowed member (46-byte header + name + extra + comment)."""

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_LOC64 = struct.Struct("<4sLQL")
_LOC64_SIG = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_EOCD64_SIG = b"PK\x06\x06"
# Errors a hostile archive can make zipfile, zlib or the filesystem raise.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)


class UnsafeZip(Exception):
    """The archive breaks a rule; ``reason`` is a short code, the message says which member."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


def zip_extent(fh: BinaryIO) -> tuple[int, int]:
    """``(members, central_directory_bytes)`` as the end records declare them, found the way
    ``zipfile`` finds them (the record at the very end, else the last signature in the final
    64 KiB + 22 bytes; a zip64 locator right before it wins). Reads at most 64 KiB + 98 bytes.
    Raises ``UnsafeZip("not_a_zip")`` when there is no end record."""
    size = fh.seek(0, os.SEEK_END)
    if size < _EOCD.size:
        raise UnsafeZip("not_a_zip", f"not a zip archive: {size} bytes")
    fh.seek(size - _EOCD.size)
    tail = fh.read(_EOCD.size)
    if tail[:4] == _EOCD_SIG and tail[-2:] == b"\0\0":
        pos, rec = size - _EOCD.size, tail
    else:
        start = max(size - (1 << 16) - _EOCD.size, 0)
        fh.seek(start)
        data = fh.read()
        at = data.rfind(_EOCD_SIG)
        if at < 0 or len(data) - at < _EOCD.size:
            raise UnsafeZip("not_a_zip", "not a zip archive: no end-of-central-directory record")
        pos, rec = start + at, data[at : at + _EOCD.size]
    _, _, _, _, members, cd_size, _, _ = _EOCD.unpack(rec)
    if pos >= _LOC64.size:
        fh.seek(pos - _LOC64.size)
        sig, _, _, _ = _LOC64.unpack(fh.read(_LOC64.size))
        if sig == _LOC64_SIG and pos >= _LOC64.size + _EOCD64.size:
            fh.seek(pos - _LOC64.size - _EOCD64.size)
            rec64 = _EOCD64.unpack(fh.read(_EOCD64.size))
            if rec64[0] == _EOCD64_SIG:
                members, cd_size = max(members, rec64[7]), max(cd_size, rec64[8])
    return members, cd_size


def _check_extent(archive: Path, max_members: int) -> None:
    try:
        with open(archive, "rb") as fh:
            members, cd_size = zip_extent(fh)
    except (OSError, struct.error) as exc:
        raise UnsafeZip("not_a_zip", f"not a zip archive: {exc}") from None
    if members > max_members:
        raise UnsafeZip(
            "too_many_members", f"the archive declares {members} members (at most {max_members})"
        )
    cd_cap = max_members * CD_BYTES_PER_MEMBER
    if cd_size > cd_cap:
        raise UnsafeZip(
            "central_directory_too_large",
            f"the central directory declares {cd_size} bytes (at most {cd_cap})",
        )


def _check_name(name: str) -> str:
    if "\x00" in name or "\\" in name:
        raise UnsafeZip("unsafe_path", f"member {name!r} has a NUL byte or a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeZip("absolute_path", f"member {name[:300]!r} is an absolute path")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeZip(
            "path_traversal", f"member {name[:300]!r} has an empty, '.' or '..' component"
        )
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_NAME_BYTES or any(
        len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for p in parts
    ):
        raise UnsafeZip(
            "name_too_long",
            f"member {name[:60]!r}... is {len(encoded)} bytes: at most {MAX_COMPONENT_BYTES} "
            f"per path component and {MAX_NAME_BYTES} in all",
        )
    return posixpath.normpath(name)


def _plan(
    infos: list[zipfile.ZipInfo], max_members: int, max_bytes: int, reserved: str | None
) -> list[tuple[str, zipfile.ZipInfo]]:
    if len(infos) > max_members:
        raise UnsafeZip("too_many_members", f"{len(infos)} members (at most {max_members})")
    seen: set[str] = set()
    dirs: set[str] = set()  # case-folded directories some member needs
    total = 0
    files: list[tuple[str, zipfile.ZipInfo]] = []
    for info in infos:
        name = _check_name(info.filename)
        key = name.casefold()
        parts = key.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if reserved is not None and parts[0] == reserved:
            raise UnsafeZip("path_conflict", f"member {name!r} is named like the archive")
        if info.is_dir():
            dirs.add(key)
            continue
        mode = (info.external_attr >> 16) & 0xFFFF
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type recorded (plain file)
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise UnsafeZip("not_regular", f"member {name!r} is {kind}")
        if info.flag_bits & 0x1:
            raise UnsafeZip("encrypted", f"member {name!r} is encrypted")
        if key in seen:
            raise UnsafeZip("duplicate", f"member {name!r} appears twice")
        seen.add(key)
        total += info.file_size
        if total >= max_bytes:
            raise UnsafeZip("too_large", f"members declare {total} bytes (less than {max_bytes})")
        files.append((name, info))
    if clash := sorted(seen & dirs):
        raise UnsafeZip("path_conflict", f"{clash[0]!r} is both a file and a directory")
    return files


def extract_zip(archive: Path, dest: Path, *, max_members: int, max_bytes: int) -> list[str]:
    """Check every member of ``archive`` and, only if all pass, extract the regular files into
    the existing directory ``dest``. Returns the relative paths written. Blocking (run it in a
    thread); raises only ``UnsafeZip``."""
    _check_extent(archive, max_members)
    base = os.path.realpath(dest)
    same_dir = os.path.realpath(archive.parent) == base
    reserved = archive.name.casefold() if same_dir else None
    try:
        zf = zipfile.ZipFile(archive)
    except _READ_ERRORS as exc:
        raise UnsafeZip("not_a_zip", f"not a zip archive: {exc}") from None
    written: list[str] = []
    try:
        with zf:
            files = _plan(zf.infolist(), max_members, max_bytes, reserved)
            for name, info in files:
                _write(zf, info, name, base)
                written.append(name)
    except UnsafeZip:
        _remove(base, written)
        raise
    except _READ_ERRORS as exc:
        _remove(base, written)
        detail = f"{type(exc).__name__}: {exc}"[:500]
        raise UnsafeZip("bad_member", f"extracting failed: {detail}") from None
    return written


def _write(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, base: str) -> None:
    target = os.path.join(base, *name.split("/"))
    if os.path.commonpath([base, os.path.realpath(os.path.dirname(target))]) != base:
        raise UnsafeZip("path_traversal", f"member {name!r} leaves the destination")
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    budget = info.file_size
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            while chunk := src.read(min(_CHUNK, budget + 1)):
                budget -= len(chunk)
                if budget < 0:
                    raise UnsafeZip("too_large", f"member {name!r} exceeds its declared size")
                out.write(chunk)
    except BaseException as exc:
        _remove(base, [name])
        if isinstance(exc, _READ_ERRORS):
            detail = f"{type(exc).__name__}: {exc}"[:500]
            raise UnsafeZip("bad_member", f"member {name!r} is corrupt: {detail}") from None
        raise


def _remove(base: str, written: list[str]) -> None:
    for name in written:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(base, *name.split("/")))
