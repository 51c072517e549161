"""Repository rules on local trees, and model references (rejected before any download)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from soundsright_async.sandbox import (
    REJECTION_REASONS,
    ModelRef,
    ModelRejected,
    RepoLimits,
    check_repo_path,
    scan_repo,
)

LIMITS = RepoLimits(max_total_bytes=100, max_files=4, max_file_bytes=60)
COMMIT = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"


def make(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def reason(root: Path, limits: RepoLimits = LIMITS) -> str:
    with pytest.raises(ModelRejected) as info:
        scan_repo(root, limits)
    assert info.value.reason in REJECTION_REASONS
    return info.value.reason


def untouched_probe(path: Path) -> tuple[bytes, float, float]:
    """Set an old atime (below mtime) so that, on a relatime/strictatime mount, any read shows."""
    os.utime(path, (1_000_000_000, 1_500_000_000))
    st = path.stat()
    return path.read_bytes(), st.st_atime, st.st_mtime


def atime_tracks_reads(tmp_path: Path) -> bool:
    probe = tmp_path / "atime-probe"
    probe.write_bytes(b"x")
    os.utime(probe, (1_000_000_000, 1_500_000_000))
    probe.read_bytes()
    return probe.stat().st_atime != 1_000_000_000


def test_symlink_to_host_file_is_rejected_and_never_followed(tmp_path: Path) -> None:
    host = tmp_path / "hostfile"
    host.write_bytes(b"port 6500\n")
    content, _, mtime = untouched_probe(host)
    os.utime(host, (1_000_000_000, 1_500_000_000))
    root = make(tmp_path / "m", {"Dockerfile": b"FROM x\n"})
    (root / "evil").symlink_to(host)
    with pytest.raises(ModelRejected) as info:
        scan_repo(root, LIMITS)
    assert info.value.reason == "symlink"
    assert info.value.detail == f"evil is a symbolic link (to {str(host)!r})"
    st = os.stat(host)
    assert host.read_bytes() == content
    assert st.st_mtime == mtime
    if atime_tracks_reads(tmp_path):
        assert st.st_atime == 1_000_000_000  # never opened for reading


def test_symlink_to_dev_zero_and_dangling_and_directory_links(tmp_path: Path) -> None:
    for i, target in enumerate(("/dev/zero", "/nonexistent", "/etc", "..")):
        root = make(tmp_path / f"m{i}", {"Dockerfile": b"FROM x\n", "sub/ok.txt": b"1"})
        (root / "sub" / "link").symlink_to(target)
        assert reason(root) == "symlink"


def test_fifo_and_device_files_are_rejected_without_blocking(tmp_path: Path) -> None:
    root = make(tmp_path / "m", {"Dockerfile": b"FROM x\n"})
    os.mkfifo(root / "pipe")
    started = time.monotonic()
    assert reason(root) == "special_file"
    assert time.monotonic() - started < 5
    if os.geteuid() == 0:
        root2 = make(tmp_path / "m2", {"Dockerfile": b"FROM x\n"})
        os.mknod(root2 / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        assert reason(root2) == "special_file"


def test_dockerfile_must_be_a_regular_file_at_the_root(tmp_path: Path) -> None:
    assert reason(make(tmp_path / "a", {"sub/Dockerfile": b"FROM x\n"})) == "no_dockerfile"
    assert reason(make(tmp_path / "b", {"dockerfile": b"FROM x\n"})) == "no_dockerfile"
    assert reason(make(tmp_path / "c", {"Dockerfile/x": b"FROM x\n"})) == "no_dockerfile"
    assert reason(make(tmp_path / "d", {"Containerfile": b"FROM x\n"})) == "no_dockerfile"
    assert scan_repo(make(tmp_path / "e", {"Dockerfile": b""}), LIMITS).file_count == 1


def test_caps(tmp_path: Path) -> None:
    five = {"Dockerfile": b"F", **{f"f{i}": b"x" for i in range(4)}}
    assert reason(make(tmp_path / "count", five)) == "too_many_files"
    assert reason(make(tmp_path / "one", {"Dockerfile": b"F", "w": b"x" * 61})) == "file_too_large"
    big = {"Dockerfile": b"F", "a": b"x" * 50, "b": b"x" * 50}
    assert reason(make(tmp_path / "total", big)) == "too_large"
    at_limit = {"Dockerfile": b"", "a": b"x" * 50, "b": b"x" * 50, ".git/big": b"x" * 999}
    digest = scan_repo(make(tmp_path / "ok", at_limit), LIMITS)
    assert (digest.total_bytes, digest.file_count) == (100, 3)


def test_non_utf8_file_name_is_rejected(tmp_path: Path) -> None:
    root = make(tmp_path / "m", {"Dockerfile": b"FROM x\n"})
    with open(os.path.join(os.fsencode(root), b"bad\xff"), "wb") as f:
        f.write(b"x")
    assert reason(root) == "bad_path"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("../evil", "path_escape"),
        ("a/../../evil", "path_escape"),
        ("/etc/passwd", "path_escape"),
        ("a//b", "path_escape"),
        ("./a", "path_escape"),
        ("a/", "path_escape"),
        ("", "path_escape"),
        ("a\x00b", "bad_path"),
    ],
)
def test_listing_paths_that_escape(path: str, expected: str) -> None:
    with pytest.raises(ModelRejected) as info:
        check_repo_path(path)
    assert info.value.reason == expected


def test_plain_listing_paths_pass() -> None:
    for path in ("Dockerfile", "a/b/c.pt", ".gitattributes", "a..b", "..a", "x/.hidden"):
        check_repo_path(path)


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        ("DENOISING_16000HZ", "revision_not_hex"),
        ("main", "revision_not_hex"),
        ("v1.0", "revision_not_hex"),
        ("", "revision_not_hex"),
        (COMMIT + "0", "revision_not_hex"),
        (COMMIT[:39], "revision_short"),
        (COMMIT[:7], "revision_short"),
        (COMMIT.upper(), "revision_uppercase"),
    ],
)
def test_bad_revisions(revision: str, expected: str) -> None:
    with pytest.raises(ModelRejected) as info:
        ModelRef("synapsecai", "model", revision)
    assert info.value.reason == expected


@pytest.mark.parametrize(
    "name", ["", "-x", "x-", ".x", "x.", "a--b", "a..b", "a/b", "..", ".", "a b", "x" * 97, "é"]
)
def test_bad_repo_names(name: str) -> None:
    with pytest.raises(ModelRejected) as info:
        ModelRef(name, "model", COMMIT)
    assert info.value.reason == "bad_repo_id"
    with pytest.raises(ModelRejected):
        ModelRef("ns", name, COMMIT)


def test_model_ref() -> None:
    ref = ModelRef.parse("synapsecai/my_speech_enhancement_model", COMMIT)
    assert ref == ModelRef("synapsecai", "my_speech_enhancement_model", COMMIT)
    assert ref.repo_id == "synapsecai/my_speech_enhancement_model"
    assert str(ref) == f"synapsecai/my_speech_enhancement_model@{COMMIT}"
    for ok in ("a", "A1", "x" * 96, "a.b-c_d", "a_"):
        assert ModelRef(ok, ok, COMMIT).name == ok
    for bad in ("a", "a/b/c", "/a"):
        with pytest.raises(ModelRejected, match="bad_repo_id"):
            ModelRef.parse(bad, COMMIT)


def test_error_carries_model_context() -> None:
    exc = ModelRejected("symlink", "evil is a symbolic link")
    with pytest.raises(RuntimeError, match="model was not set"):
        _ = exc.model
    tagged = exc.for_model(f"ns/m@{COMMIT}")
    assert isinstance(tagged, ModelRejected)
    assert tagged.model == f"ns/m@{COMMIT}"
    assert str(tagged) == f"ns/m@{COMMIT}: symlink: evil is a symbolic link"
    with pytest.raises(RuntimeError, match="unknown rejection reason"):
        ModelRejected("nope")
