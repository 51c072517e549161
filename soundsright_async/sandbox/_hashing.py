"""The canonical content hash of a model repository and the checkpoint-file hashes (pure).

Content hash: sha256 over every regular file, in ascending order of its full relative POSIX path
compared as UTF-8 bytes; each file contributes ``u64be(len(path)) || path || u64be(len(content))
|| content`` (path as UTF-8, lengths as 8-byte big-endian unsigned integers). The digest is given
in standard base64 with padding. Directories contribute only through their files; ``.git``
directories are not part of the tree. The empty tree hashes to sha256(b"").
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

__all__ = [
    "CHECKPOINT_EXTENSIONS",
    "ContentHasher",
    "content_hash",
    "is_checkpoint",
    "path_sort_key",
]

CHECKPOINT_EXTENSIONS = (
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".bin",
    ".safetensors",
    ".msgpack",
    ".npz",
    ".onnx",
    ".engine",
)
"""A file whose name ends (case-sensitively) with one of these is a checkpoint file."""


def is_checkpoint(path: str) -> bool:
    return path.endswith(CHECKPOINT_EXTENSIONS)


def path_sort_key(path: str) -> bytes:
    """Files are hashed in ascending order of their UTF-8 encoded relative path."""
    return path.encode("utf-8")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class ContentHasher:
    """Incremental content hash: call ``start_file`` then ``update`` with exactly ``size`` bytes,
    once per file in ``path_sort_key`` order."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._last: bytes | None = None
        self._remaining = 0

    def start_file(self, path: str, size: int) -> None:
        if self._remaining:
            raise RuntimeError("previous file is missing content bytes")
        key = path_sort_key(path)
        if self._last is not None and key <= self._last:
            raise RuntimeError(f"files must be fed in ascending path order: {path!r}")
        self._last = key
        self._h.update(_u64(len(key)) + key + _u64(size))
        self._remaining = size

    def update(self, chunk: bytes) -> None:
        if len(chunk) > self._remaining:
            raise RuntimeError("more content bytes than the announced size")
        self._remaining -= len(chunk)
        self._h.update(chunk)

    def digest(self) -> str:
        if self._remaining:
            raise RuntimeError("last file is missing content bytes")
        return base64.b64encode(self._h.digest()).decode("ascii")


def content_hash(files: Iterable[tuple[str, bytes]]) -> str:
    """The content hash of an in-memory tree of ``(relative POSIX path, content)`` pairs."""
    hasher = ContentHasher()
    for path, data in sorted(files, key=lambda item: path_sort_key(item[0])):
        hasher.start_file(path, len(data))
        hasher.update(data)
    return hasher.digest()
