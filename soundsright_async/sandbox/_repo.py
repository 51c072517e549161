"""Repository rules and the scan that applies them and hashes a tree on disk.

The scan never follows a link and never opens anything but a regular file: entries are examined
with ``lstat`` semantics, files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and re-checked with
``fstat``. A symbolic link, a device file, FIFO or socket anywhere in the tree rejects it.
Directories named ``.git`` are skipped (never entered, never counted).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ._errors import ModelRejected
from ._hashing import ContentHasher, is_checkpoint, path_sort_key

__all__ = [
    "RepoDigest",
    "RepoLimits",
    "check_limits",
    "check_repo_path",
    "inspect_repo",
    "scan_repo",
]

_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class RepoLimits:
    """Caps on a model repository (files outside ``.git``)."""

    max_total_bytes: int
    max_files: int
    max_file_bytes: int


@dataclass(frozen=True, slots=True)
class RepoDigest:
    """What a checked tree hashes to. ``checkpoints`` are ``(path, sha256 hex)`` in path order."""

    content_hash: str
    checkpoints: tuple[tuple[str, str], ...]
    total_bytes: int
    file_count: int

    @property
    def checkpoint_hashes(self) -> list[str]:
        return [digest for _, digest in self.checkpoints]

    def to_dict(self) -> dict[str, object]:
        return {
            "content_hash": self.content_hash,
            "checkpoint_hashes": self.checkpoint_hashes,
            "bytes": self.total_bytes,
            "files": self.file_count,
        }


def check_repo_path(path: str) -> None:
    """Reject a repository path (from a listing) that is not a plain relative POSIX path."""
    if "\x00" in path:
        raise ModelRejected("bad_path", f"path {path!r} contains a NUL byte")
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ModelRejected("path_escape", f"path {path!r} is not a plain relative path")


def check_limits(limits: RepoLimits, path: str, size: int, files: int, total: int) -> None:
    """Apply the caps to one more file (``files``/``total`` include it)."""
    if files > limits.max_files:
        raise ModelRejected("too_many_files", f"more than {limits.max_files} files")
    if size > limits.max_file_bytes:
        raise ModelRejected(
            "file_too_large", f"{path} has {size} bytes (limit {limits.max_file_bytes})"
        )
    if total > limits.max_total_bytes:
        raise ModelRejected(
            "too_large", f"more than {limits.max_total_bytes} bytes in total (at {path})"
        )


def _utf8_name(rel: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ModelRejected("bad_path", f"path {rel!r} is not valid UTF-8") from None


def _walk(root: Path, limits: RepoLimits) -> list[tuple[str, int]]:
    """Regular files as ``(relative path, size)``; rejects anything else, applies the caps."""
    files: list[tuple[str, int]] = []
    total = 0
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(root / rel_dir if rel_dir else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs: list[str] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            _utf8_name(rel)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry.path)
                raise ModelRejected("symlink", f"{rel} is a symbolic link (to {target!r})")
            if stat.S_ISDIR(st.st_mode):
                if entry.name != ".git":
                    subdirs.append(rel)
                continue
            if not stat.S_ISREG(st.st_mode):
                mode = stat.filemode(st.st_mode)
                raise ModelRejected("special_file", f"{rel} is not a regular file ({mode})")
            total += st.st_size
            files.append((rel, st.st_size))
            check_limits(limits, rel, st.st_size, len(files), total)
        stack.extend(reversed(subdirs))
    return files


def _hash_file(root: Path, rel: str, size: int, hasher: ContentHasher) -> str | None:
    """Feed one file to ``hasher``; return its sha256 hex when it is a checkpoint file."""
    fd = os.open(root / rel, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            raise ModelRejected("changed_during_check", f"{rel} changed while it was checked")
        ckpt = hashlib.sha256() if is_checkpoint(rel) else None
        hasher.start_file(rel, size)
        remaining = size
        while remaining:
            chunk = os.read(fd, min(_CHUNK, remaining))
            if not chunk:
                raise ModelRejected("changed_during_check", f"{rel} shrank while it was hashed")
            remaining -= len(chunk)
            hasher.update(chunk)
            if ckpt is not None:
                ckpt.update(chunk)
        if os.read(fd, 1):
            raise ModelRejected("changed_during_check", f"{rel} grew while it was hashed")
        return ckpt.hexdigest() if ckpt is not None else None
    finally:
        os.close(fd)


def scan_repo(root: Path, limits: RepoLimits) -> RepoDigest:
    """Apply the repository rules to the tree at ``root`` and hash it (blocking)."""
    if not stat.S_ISDIR(os.lstat(root).st_mode):
        raise ModelRejected("special_file", f"{root} is not a directory")
    files = sorted(_walk(root, limits), key=lambda f: path_sort_key(f[0]))
    if "Dockerfile" not in {rel for rel, _ in files}:
        raise ModelRejected("no_dockerfile")
    hasher = ContentHasher()
    checkpoints: list[tuple[str, str]] = []
    for rel, size in files:
        digest = _hash_file(root, rel, size, hasher)
        if digest is not None:
            checkpoints.append((rel, digest))
    return RepoDigest(
        content_hash=hasher.digest(),
        checkpoints=tuple(checkpoints),
        total_bytes=sum(size for _, size in files),
        file_count=len(files),
    )


async def inspect_repo(root: Path, limits: RepoLimits) -> RepoDigest:
    """``scan_repo`` in a worker thread."""
    return await asyncio.to_thread(scan_repo, root, limits)
