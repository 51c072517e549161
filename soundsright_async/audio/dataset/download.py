"""Corpus archives: resumable download with size and sha256 checks, and safe zip extraction.

* ``fetch_archive`` streams to ``NAME.part`` and resumes it with an HTTP ``Range`` request after a
  failure (network errors are retried with backoff); the file is renamed to ``NAME`` only when its
  size and (when pinned) sha256 match, and the verified digest is recorded in ``NAME.sha256``.
* ``extract_wavs`` extracts the ``*.wav`` members of a zip, refusing absolute paths, ``..``,
  symlinks, too many members and too many bytes; names are flattened without collisions
  (``a/b/c.wav`` becomes ``a__b__c.wav``). Extraction goes to a temporary sibling directory
  that is renamed into place when complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

import aiohttp
import structlog

from .errors import CorpusError

__all__ = ["Archive", "extract_wavs", "fetch_archive", "sha256_file"]

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_MAX_MEMBERS = 1_000_000


class _Transient(Exception):
    """A failure worth retrying (short read, 5xx); the ``.part`` file is kept for resuming."""


@dataclass(frozen=True, slots=True)
class Archive:
    """One downloadable file. ``sha256`` empty / ``size`` 0 mean "not pinned"."""

    url: str
    sha256: str = ""
    size: int = 0

    @property
    def filename(self) -> str:
        name = PurePosixPath(urlsplit(self.url).path).name
        if not name or name in (".", ".."):
            raise CorpusError(f"cannot derive a file name from {self.url}")
        return name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


async def fetch_archive(
    archive: Archive,
    dest: Path,
    *,
    session: aiohttp.ClientSession,
    max_bytes: int,
    attempts: int = 5,
    backoff_s: float = 1.0,
    read_timeout_s: float = 120.0,
) -> Path:
    """Download ``archive`` into directory ``dest`` (resuming ``.part``); return the file."""
    final = dest / archive.filename
    marker = final.with_name(final.name + ".sha256")
    if await asyncio.to_thread(_already_there, dest, final, marker):
        return final
    part = final.with_name(final.name + ".part")
    jitter = random.Random()
    for attempt in range(1, attempts + 1):
        try:
            await _download(archive, part, session, max_bytes, read_timeout_s)
            break
        except (aiohttp.ClientError, TimeoutError, ConnectionError, _Transient) as exc:
            if attempt == attempts:
                raise CorpusError(
                    f"{archive.url}: download failed after {attempts} attempts: {exc!r}"
                ) from exc
            delay = jitter.uniform(0, backoff_s * 2 ** (attempt - 1))
            log.warning("corpus.retry", url=archive.url, attempt=attempt, error=repr(exc))
            await asyncio.sleep(delay)
    digest = await asyncio.to_thread(sha256_file, part)
    if archive.sha256 and digest != archive.sha256:
        await asyncio.to_thread(part.unlink)
        raise CorpusError(
            f"{archive.url}: sha256 mismatch (expected {archive.sha256}, got {digest}); "
            "the partial file was removed"
        )
    if not archive.sha256:
        log.warning("corpus.unpinned", url=archive.url, sha256=digest)
    os.replace(part, final)
    marker.write_text(digest + "\n")
    log.info("corpus.downloaded", url=archive.url, path=str(final), sha256=digest)
    return final


async def _download(
    archive: Archive,
    part: Path,
    session: aiohttp.ClientSession,
    max_bytes: int,
    read_timeout_s: float,
) -> None:
    have = await asyncio.to_thread(_resume_point, part, archive.size)
    headers = {"Range": f"bytes={have}-"} if have else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout_s)
    async with session.get(archive.url, headers=headers, timeout=timeout) as resp:
        if resp.status == 416 and have:  # nothing left to fetch: the part may be complete
            total_416 = _total_from_content_range(resp.headers.get("Content-Range"))
            if total_416 != have and not archive.size:
                # an unpinned part that does not match the server's size (longer, or the server
                # does not say): it cannot be resumed, start again from scratch
                await asyncio.to_thread(part.unlink)
                log.warning("corpus.restart", url=archive.url, had=have, server=total_416)
                raise _Transient(f"partial file of {have} bytes does not fit; restarting")
            _check_size(archive, have, total_416 or have)
            return
        if resp.status == 206 and have:
            total: int | None = _total_from_content_range(resp.headers.get("Content-Range"))
            mode = "ab"
        elif resp.status == 200:
            total = resp.content_length
            have, mode = 0, "wb"
        elif resp.status in (408, 429) or resp.status >= 500:
            raise _Transient(f"HTTP {resp.status}")
        else:
            raise CorpusError(f"{archive.url}: HTTP {resp.status}")
        expected = archive.size or total or 0
        if archive.size and total and total != archive.size:
            raise CorpusError(f"{archive.url}: server size {total} != expected {archive.size}")
        if expected > max_bytes:
            raise CorpusError(f"{archive.url}: {expected} bytes exceeds the cap of {max_bytes}")
        f = await asyncio.to_thread(open, part, mode)
        pending = bytearray()
        try:  # whatever arrived is kept on failure, so the next attempt resumes after it
            async for chunk in resp.content.iter_any():
                have += len(chunk)
                if have > max_bytes or (expected and have > expected):
                    raise CorpusError(f"{archive.url}: more data than expected ({have} bytes)")
                pending += chunk
                if len(pending) >= _CHUNK:
                    await asyncio.to_thread(f.write, bytes(pending))
                    pending.clear()
        finally:
            await asyncio.to_thread(_flush_and_close, f, bytes(pending))
    _check_size(archive, have, expected)


def _flush_and_close(f: IO[bytes], tail: bytes) -> None:
    try:
        f.write(tail)
    finally:
        f.close()


def _already_there(dest: Path, final: Path, marker: Path) -> bool:
    dest.mkdir(parents=True, exist_ok=True)
    return final.exists() and marker.exists()


def _resume_point(part: Path, size: int) -> int:
    have = part.stat().st_size if part.exists() else 0
    if size and have > size:
        part.unlink()
        have = 0
    return have


def _check_size(archive: Archive, have: int, expected: int) -> None:
    if expected and have != expected:
        raise _Transient(f"short download: {have} of {expected} bytes")


def _total_from_content_range(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def _flat_name(member: str) -> str:
    p = PurePosixPath(member)
    if p.is_absolute() or ".." in p.parts or "\\" in member or ":" in member:
        raise CorpusError(f"unsafe path in archive: {member!r}")
    return "__".join(part for part in p.parts if part not in ("", "."))


def extract_wavs(zip_path: Path, dest: Path, *, max_bytes: int) -> list[str]:
    """Extract every ``*.wav`` of ``zip_path`` flat into ``dest`` (must not exist yet), safely.

    Blocking: call it in a thread. Returns the sorted extracted names.
    """
    if dest.exists():
        raise CorpusError(f"{dest} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        names: list[str] = []
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            if len(members) > _MAX_MEMBERS:
                raise CorpusError(f"{zip_path.name}: {len(members)} members is too many")
            total = 0
            for info in members:
                if info.is_dir():
                    continue
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise CorpusError(f"{zip_path.name}: symlink member {info.filename!r}")
                flat = _flat_name(info.filename)
                if not flat.lower().endswith(".wav"):
                    continue
                total += info.file_size
                if total > max_bytes:
                    raise CorpusError(f"{zip_path.name}: extracted size exceeds {max_bytes}")
                if flat in names:
                    raise CorpusError(f"{zip_path.name}: duplicate member {flat!r}")
                with zf.open(info) as src, open(tmp / flat, "xb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                if (tmp / flat).stat().st_size != info.file_size:
                    raise CorpusError(f"{zip_path.name}: {info.filename!r} size mismatch")
                names.append(flat)
        os.rename(tmp, dest)
        return sorted(names)
    except zipfile.BadZipFile as exc:
        raise CorpusError(f"{zip_path.name}: not a valid zip: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
