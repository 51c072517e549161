"""Golden tests of the canonical content hash and the checkpoint hashes."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import struct
from pathlib import Path

import pytest

from soundsright_async.sandbox import (
    ContentHasher,
    RepoLimits,
    content_hash,
    is_checkpoint,
    scan_repo,
)

LIMITS = RepoLimits(max_total_bytes=1 << 20, max_files=100, max_file_bytes=1 << 20)

# The reference's §1.6 test tree (plus its .git), hashed with our framing.
REF_TREE = {
    "Dockerfile": b"FROM python:3.12\n",
    "a.txt": b"hello",
    ".lock": b"x",
    "sub/model.ckpt": b"w",
}
REF_TREE_HASH = "MSwhFm5qV5hLt+Ykm2jxHaGHEmk91HyTjRoYfSltp4E="
EMPTY_HASH = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
CKPT_W = "50e721e49c013f00c62cf59f2163542a9d8df02464efeb615d31051b0fddc326"


def spec_hash(files: dict[str, bytes]) -> str:
    """The hash exactly as docs/models.md defines it, written independently of the package."""
    h = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.encode()):
        p = path.encode()
        h.update(struct.pack(">Q", len(p)) + p + struct.pack(">Q", len(files[path])))
        h.update(files[path])
    return base64.b64encode(h.digest()).decode()


def write_tree(root: Path, files: dict[str, bytes], order: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel in order or list(files):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])
    return root


def test_golden_values() -> None:
    assert content_hash(REF_TREE.items()) == REF_TREE_HASH == spec_hash(REF_TREE)
    assert content_hash([]) == EMPTY_HASH == base64.b64encode(hashlib.sha256().digest()).decode()
    assert content_hash([("Dockerfile", b"FROM python:3.12\n")]) == (
        "TLKJMkfK4G7u2ifXAeYJym+3Hvfr8J/kvUgsBCm95Qo="
    )


def test_scan_of_the_reference_tree(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", REF_TREE | {".git/HEAD": b"ref: refs/heads/main\n"})
    digest = scan_repo(root, LIMITS)
    assert digest.content_hash == REF_TREE_HASH
    assert digest.checkpoints == (("sub/model.ckpt", CKPT_W),)
    assert digest.checkpoint_hashes == [CKPT_W]
    assert (digest.total_bytes, digest.file_count) == (24, 4)
    assert digest.to_dict() == {
        "content_hash": REF_TREE_HASH,
        "checkpoint_hashes": [CKPT_W],
        "bytes": 24,
        "files": 4,
    }


def test_creation_order_does_not_matter(tmp_path: Path) -> None:
    files = {
        "Dockerfile": b"FROM base\n",
        "b/z.bin": b"\x00\x01",
        "b/a/x.pt": b"pt",
        "a/b/c.txt": b"c",
        "a.txt": b"a",
        "a/y.onnx": b"onnx",
        "c/d/e/f.npz": b"f",
        "é.txt": "é".encode(),
    }
    order = list(files)
    shuffled = order[:]
    random.Random(7).shuffle(shuffled)
    first = scan_repo(write_tree(tmp_path / "one", files, order), LIMITS)
    second = scan_repo(write_tree(tmp_path / "two", files, list(reversed(shuffled))), LIMITS)
    assert first == second
    assert first.content_hash == spec_hash(files)
    # checkpoints in UTF-8 path order: "a/y.onnx" < "b/a/x.pt" < "b/z.bin" < "c/d/e/f.npz"
    assert [p for p, _ in first.checkpoints] == ["a/y.onnx", "b/a/x.pt", "b/z.bin", "c/d/e/f.npz"]
    assert first.checkpoints[1] == ("b/a/x.pt", hashlib.sha256(b"pt").hexdigest())


def test_paths_sort_as_utf8_bytes_not_per_directory() -> None:
    # "a.txt" (0x2E) sorts before "a/b" (0x2F): a per-directory walk would order them otherwise.
    hasher = ContentHasher()
    hasher.start_file("a.txt", 0)
    hasher.start_file("a/b", 0)
    assert hasher.digest() == content_hash([("a/b", b""), ("a.txt", b"")])
    hasher2 = ContentHasher()
    hasher2.start_file("a/b", 0)
    with pytest.raises(RuntimeError, match="ascending path order"):
        hasher2.start_file("a.txt", 0)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"a.txt": None, "b.txt": b"hello"}, id="rename"),
        pytest.param({"a.txt": b"hellp"}, id="one-byte"),
        pytest.param({"a.txt": b"hello\x00"}, id="one-byte-appended"),
        pytest.param({".gitattributes": b"* text\n"}, id="new-hidden-file"),
        pytest.param({"sub/model.ckpt": None, "sub/model.ckptw": b""}, id="byte-from-content"),
        pytest.param({"a.txt": None, "a.tx": b"thello"}, id="byte-to-content"),
    ],
)
def test_any_change_changes_the_hash(change: dict[str, bytes | None]) -> None:
    files = dict(REF_TREE)
    for path, data in change.items():
        if data is None:
            del files[path]
        else:
            files[path] = data
    assert content_hash(files.items()) != REF_TREE_HASH


def test_moving_bytes_between_path_and_content() -> None:
    # Without framing (the reference) these two trees collide.
    assert hashlib.sha256(b"ab" + b"c").digest() == hashlib.sha256(b"a" + b"bc").digest()
    assert content_hash([("ab", b"c")]) == "YB1UduLM/iyHorunoyJllzSgV0nVtap4H1E+SRLbDV8="
    assert content_hash([("a", b"bc")]) == "P6+hzy8Zp8ESm+sgzwmD9zpImiIfwN0vFtG+KS0IkgU="


def test_git_directories_and_empty_directories_are_not_hashed(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", REF_TREE)
    before = scan_repo(root, LIMITS)
    write_tree(root, {".git/objects/x": b"1", "sub/.git/config": b"2"})
    (root / "empty" / "deeper").mkdir(parents=True)
    assert scan_repo(root, LIMITS) == before


def test_checkpoint_extensions() -> None:
    names = [f"m{ext}" for ext in (".pt", ".pth", ".ckpt", ".h5", ".bin", ".safetensors")]
    names += ["m.msgpack", "m.npz", "m.onnx", "m.engine", "dir/x.pt"]
    assert all(is_checkpoint(n) for n in names)
    assert not any(is_checkpoint(n) for n in ("m.PT", "m.pt.txt", "m.json", "pt", "m.ckpt~"))


def test_large_file_is_hashed_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    files = {"Dockerfile": b"FROM x\n", "w.safetensors": data}
    limits = RepoLimits(max_total_bytes=1 << 23, max_files=10, max_file_bytes=1 << 23)
    digest = scan_repo(write_tree(tmp_path / "m", files), limits)
    assert digest.content_hash == spec_hash(files)
    assert digest.checkpoint_hashes == [hashlib.sha256(data).hexdigest()]
