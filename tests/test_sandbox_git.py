"""The git model source against local bare repositories served by path (and file://)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sandbox_support import LIMITS, GitHub, Link, git, tree_of

from soundsright_async.sandbox import (
    FakeModelSource,
    GitSource,
    ModelCache,
    ModelRef,
    ModelRejected,
    ModelSource,
    ModelSourceError,
    ModelUnavailable,
    RepoLimits,
    content_hash,
    fetch_model,
)

V1 = {"Dockerfile": b"FROM base\n", "app/run.py": b"print(6500)\n", "w/model.ckpt": b"w"}
V2 = {"Dockerfile": b"FROM base\nUSER 10002\n", "app/run.py": b"print(6501)\n", "new.txt": b"n"}


@pytest.fixture
def hub(tmp_path: Path) -> GitHub:
    return GitHub(tmp_path / "git")


def source(hub: GitHub, limits: RepoLimits = LIMITS, timeout_s: float = 20) -> GitSource:
    return GitSource(base_url=str(hub.hub), limits=limits, timeout_s=timeout_s)


async def fetch_reason(src: ModelSource, ref: ModelRef, dest: Path) -> ModelSourceError:
    with pytest.raises(ModelSourceError) as info:
        await fetch_model(src, ref, dest, LIMITS)
    assert_no_trace(dest)
    assert info.value.model == str(ref)
    return info.value


def assert_no_trace(dest: Path) -> None:
    """Neither the tree nor its scratch directory is left behind."""
    assert not dest.exists()
    assert [n for n in os.listdir(dest.parent) if n.endswith(".partial")] == []


async def test_fetch_at_a_commit_gives_exactly_that_tree(hub: GitHub, tmp_path: Path) -> None:
    c1 = hub.commit("ns/model", V1, executable=("app/run.py",))
    c2 = hub.commit("ns/model", V2)
    out = tmp_path / "out"
    for commit, files in ((c1, V1), (c2, V2)):
        for label, base_url in (("path", str(hub.hub)), ("url", f"file://{hub.hub}")):
            src = GitSource(base_url=base_url, limits=LIMITS, timeout_s=20)
            dest = out / f"{commit[:8]}-{label}"
            fetched = await fetch_model(src, ModelRef("ns", "model", commit), dest, LIMITS)
            assert tree_of(dest) == files
            assert fetched.digest.content_hash == content_hash(files.items())
            assert fetched.digest.file_count == len(files)
            assert fetched.digest.total_bytes == sum(map(len, files.values()))
            assert not (dest / ".git").exists()
    check_modes_and_listing(out, c1, c2)


def check_modes_and_listing(out: Path, c1: str, c2: str) -> None:
    assert (out / f"{c1[:8]}-path" / "app/run.py").stat().st_mode & 0o777 == 0o755
    assert (out / f"{c1[:8]}-url" / "Dockerfile").stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(out)) == sorted(
        f"{c[:8]}-{b}" for c in (c1, c2) for b in ("path", "url")
    )


async def test_bytes_are_raw_blobs_whatever_gitattributes_say(hub: GitHub, tmp_path: Path) -> None:
    files = {
        "Dockerfile": b"FROM base\n",
        ".gitattributes": b"* text eol=crlf\n*.txt ident\n",
        "a.txt": b"line1\nline2 $Id$\n",
    }
    commit = hub.commit("ns/attrs", files)
    dest = tmp_path / "out" / "m"
    await fetch_model(source(hub), ModelRef("ns", "attrs", commit), dest, LIMITS)
    assert tree_of(dest) == files


async def test_rejections_have_distinct_reasons(hub: GitHub, tmp_path: Path) -> None:
    host = tmp_path / "hostfile"
    host.write_bytes(b"EXPOSE 6500\n")
    os.utime(host, (1_000_000_000, 1_500_000_000))
    good = hub.commit("ns/good", V1)
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    big = {"Dockerfile": b"F", **{f"w{i}.bin": os.urandom(400 << 10) for i in range(3)}}
    many = {"Dockerfile": b"F"} | {f"f{i}": b"" for i in range(100)}
    fat = {"Dockerfile": b"F", "w.bin": b"x" * ((1 << 19) + 1)}
    cases: dict[str, tuple[str, str]] = {
        "branch name": ("ns/good", "main"),
        "short hash": ("ns/good", good[:12]),
        "unknown commit": ("ns/good", wrong),
        "unknown repo": ("ns/nope", good),
        "size cap": ("ns/big", hub.commit("ns/big", big)),
        "file-count cap": ("ns/many", hub.commit("ns/many", many)),
        "file-size cap": ("ns/fat", hub.commit("ns/fat", fat)),
        "symlink to host file": ("ns/ln", hub.commit("ns/ln", V1 | {"evil": Link(str(host))})),
        "symlink to /dev/zero": ("ns/z", hub.commit("ns/z", V1 | {"w/z.bin": Link("/dev/zero")})),
        "no Dockerfile": ("ns/nodf", hub.commit("ns/nodf", {"app/Dockerfile": b"FROM x\n"})),
    }
    reasons: dict[str, str] = {}
    for case, (repo, rev) in cases.items():
        dest = tmp_path / "out" / case.replace(" ", "_").replace("/", "_")
        try:
            ref = ModelRef.parse(repo, rev)
        except ModelRejected as exc:
            reasons[case] = exc.reason
            continue
        reasons[case] = (await fetch_reason(source(hub), ref, dest)).reason
    assert reasons == {
        "branch name": "revision_not_hex",
        "short hash": "revision_short",
        "unknown commit": "revision_not_found",
        "unknown repo": "repo_not_found",
        "size cap": "too_large",
        "file-count cap": "too_many_files",
        "file-size cap": "file_too_large",
        "symlink to host file": "symlink",
        "symlink to /dev/zero": "symlink",
        "no Dockerfile": "no_dockerfile",
    }
    st = host.stat()
    assert host.read_bytes() == b"EXPOSE 6500\n"
    assert (st.st_atime, st.st_mtime) == (1_000_000_000, 1_500_000_000)  # never read or written


async def test_a_tree_id_is_not_a_commit(hub: GitHub, tmp_path: Path) -> None:
    commit = hub.commit("ns/m", V1)
    tree_id = git("rev-parse", f"{commit}^{{tree}}", cwd=hub.hub / "ns" / "m")
    exc = await fetch_reason(source(hub), ModelRef("ns", "m", tree_id), tmp_path / "o" / "m")
    assert (exc.reason, exc.detail) == ("revision_not_commit", f"{tree_id} is a tree")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An HTTP 'git server' on loopback that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def git_processes_for(marker: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(pid))
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
            continue
    return pids


async def test_deadline_kills_git(silent_server: str, tmp_path: Path) -> None:
    src = GitSource(base_url=silent_server, limits=LIMITS, timeout_s=1.0)
    ref = ModelRef("ns", "slow", "1" * 40)
    loop = asyncio.get_running_loop()
    started = loop.time()
    exc = await fetch_reason(src, ref, tmp_path / "out" / "m")
    assert isinstance(exc, ModelUnavailable)
    assert (exc.reason, exc.detail) == ("timeout", "git did not finish within 1 s")
    assert loop.time() - started < 5
    assert git_processes_for(silent_server) == []


async def test_cache_fetches_once_per_model_per_epoch(hub: GitHub, tmp_path: Path) -> None:
    c1 = hub.commit("ns/m", V1)
    cache = ModelCache(source(hub), tmp_path / "models", LIMITS)
    ref = ModelRef("ns", "m", c1)
    first, second = await asyncio.gather(cache.get(ref, epoch=1), cache.get(ref, epoch=1))
    assert first is second
    assert first.path == tmp_path / "models" / "ns" / "m" / c1
    assert (await cache.get(ref, epoch=1)) is first
    assert cache.downloads == 1
    bad = ModelRef("ns", "m", "0" * 40)
    for _ in range(2):
        with pytest.raises(ModelRejected, match="revision_not_found"):
            await cache.get(bad, epoch=1)
    assert cache.downloads == 2
    again = await cache.get(ref, epoch=2)
    assert again is not first
    assert cache.downloads == 3
    assert tree_of(again.path) == V1
    with pytest.raises(RuntimeError, match="older than the current epoch"):
        await cache.get(ref, epoch=1)


async def test_new_epoch_deletes_old_trees(tmp_path: Path) -> None:
    c = "a" * 40
    fake = FakeModelSource({"ns/a": {c: V1}, "ns/b": {c: V2}})
    cache = ModelCache(fake, tmp_path / "models", LIMITS)
    a = await cache.get(ModelRef("ns", "a", c), epoch=5)
    await cache.get(ModelRef("ns", "b", c), epoch=6)
    assert not a.path.exists()
    assert [str(r) for r in fake.calls] == [f"ns/a@{c}", f"ns/b@{c}"]


@pytest.mark.parametrize("kind", ["fake", "git"])
async def test_contract(kind: str, hub: GitHub, tmp_path: Path) -> None:
    """The fake and the git adapter agree on the outcomes that callers depend on."""
    commit = hub.commit("ns/m", V1)
    src: ModelSource = source(hub) if kind == "git" else FakeModelSource({"ns/m": {commit: V1}})
    assert isinstance(src, ModelSource)
    out = tmp_path / "out"
    fetched = await fetch_model(src, ModelRef("ns", "m", commit), out / "ok", LIMITS)
    assert fetched.digest.content_hash == content_hash(V1.items())
    missing_rev = await fetch_reason(src, ModelRef("ns", "m", "0" * 40), out / "r")
    missing_repo = await fetch_reason(src, ModelRef("ns", "x", commit), out / "x")
    assert (missing_rev.reason, missing_repo.reason) == ("revision_not_found", "repo_not_found")
    assert all(isinstance(e, ModelRejected) for e in (missing_rev, missing_repo))
