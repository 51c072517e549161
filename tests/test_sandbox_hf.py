"""The HuggingFace model source against a hub-compatible HTTP server on loopback."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from test_sandbox_support import LIMITS, HubServer, serve_hub, tree_of

from soundsright_async.sandbox import (
    HuggingFaceSource,
    ModelRef,
    ModelRejected,
    ModelSourceError,
    ModelUnavailable,
    content_hash,
    fetch_model,
)

C1 = "1" * 40
C2 = "2" * 40
V1 = {"Dockerfile": b"FROM base\n", "app/run.py": b"print(6500)\n", "w/model.ckpt": b"w" * 3000}
V2 = {"Dockerfile": b"FROM base\nUSER 10002\n", "new.txt": b"n"}


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with serve_hub(HubServer(repos={"ns/model": {C1: V1, C2: V2}})) as server:
        yield server


def source(hub: HubServer, timeout_s: float = 20, token: str | None = None) -> HuggingFaceSource:
    return HuggingFaceSource(
        endpoint=hub.url,
        limits=LIMITS,
        timeout_s=timeout_s,
        token=SecretStr(token) if token else None,
    )


def gone(dest: Path) -> bool:
    return not dest.exists()


def no_trace(dest: Path) -> bool:
    """Neither the tree nor its scratch directory is left behind."""
    return gone(dest) and not [n for n in os.listdir(dest.parent) if n.endswith(".partial")]


def download_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hf-download")]


async def rejection(src: HuggingFaceSource, ref: ModelRef, dest: Path) -> ModelSourceError:
    with pytest.raises(ModelSourceError) as info:
        await fetch_model(src, ref, dest, LIMITS)
    assert gone(dest)  # never a partial model
    assert info.value.model == str(ref)
    return info.value


async def test_fetch_at_a_commit(hub: HubServer, tmp_path: Path) -> None:
    for commit, files in ((C1, V1), (C2, V2)):
        dest = tmp_path / "out" / commit[:4]
        fetched = await fetch_model(source(hub), ModelRef("ns", "model", commit), dest, LIMITS)
        assert tree_of(dest) == files  # nothing else: the tool's .cache/ is gone
        assert fetched.digest.content_hash == content_hash(files.items())
    assert sorted(os.listdir(tmp_path / "out")) == ["1111", "2222"]
    # exactly the requests snapshot_download makes for a commit id (no repo_info call)
    seen = sorted({(method, path) for method, path, _ in hub.requests})
    tree = f"/api/models/ns/model/tree/{C1}"
    files = [f"/ns/model/resolve/{C1}/{p}" for p in sorted(V1)]
    expected = [("GET", tree)] + [(m, f) for f in files for m in ("GET", "HEAD")]
    assert [r for r in seen if C1 in r[1]] == sorted(expected)
    assert all(auth is None for _, _, auth in hub.requests)  # no stored token is ever used


async def test_token_is_sent_when_configured(hub: HubServer, tmp_path: Path) -> None:
    ref = ModelRef("ns", "model", C2)
    await fetch_model(source(hub, token="hf_test"), ref, tmp_path / "m", LIMITS)
    assert {auth for _, _, auth in hub.requests} == {"Bearer hf_test"}


async def test_missing_revision_and_repo(hub: HubServer, tmp_path: Path) -> None:
    exc = await rejection(source(hub), ModelRef("ns", "model", "3" * 40), tmp_path / "a")
    assert isinstance(exc, ModelRejected)
    assert (exc.reason, exc.detail) == ("revision_not_found", f"no commit {'3' * 40} in ns/model")
    exc = await rejection(source(hub), ModelRef("ns", "other", C1), tmp_path / "b")
    detail = "ns/other does not exist or is not accessible"
    assert (exc.reason, exc.detail) == ("repo_not_found", detail)
    assert {m for m, _, _ in hub.requests} == {"GET"}  # listings only: nothing was downloaded


async def test_download_cut_short_is_not_accepted(hub: HubServer, tmp_path: Path) -> None:
    hub.cut["w/model.ckpt"] = "short"  # the body ends half-way, without a Content-Length
    exc = await rejection(source(hub), ModelRef("ns", "model", C1), tmp_path / "m")
    assert isinstance(exc, ModelUnavailable)
    assert exc.reason == "download_failed"
    assert "Consistency check failed" in exc.detail
    assert no_trace(tmp_path / "m")


async def test_connection_dropped_mid_file_until_deadline(hub: HubServer, tmp_path: Path) -> None:
    hub.cut["w/model.ckpt"] = "drop"  # the client resumes with Range; the server drops every time
    loop = asyncio.get_running_loop()
    started = loop.time()
    exc = await rejection(source(hub, timeout_s=2.5), ModelRef("ns", "model", C1), tmp_path / "m")
    assert isinstance(exc, ModelUnavailable)
    assert (exc.reason, exc.detail) == ("timeout", "download did not finish within 2.5 s")
    assert loop.time() - started < 4
    gets = [p for m, p, _ in hub.requests if m == "GET" and p.endswith("model.ckpt")]
    assert len(gets) >= 2  # the client did try to resume
    for _ in range(100):  # the abandoned thread stops at its next chunk and cleans up
        if not download_threads():
            break
        await asyncio.sleep(0.1)
    assert download_threads() == []
    assert no_trace(tmp_path / "m")


async def test_listing_is_checked_before_any_download(hub: HubServer, tmp_path: Path) -> None:
    big = {f"{i}.bin": b"x" * (400 << 10) for i in range(3)}
    hub.repos["ns/many"] = {C1: {"Dockerfile": b"F"} | {f"f{i}": b"" for i in range(100)}}
    hub.repos["ns/fat"] = {C1: {"Dockerfile": b"F", "w.bin": b"x" * ((1 << 19) + 1)}}
    hub.repos["ns/big"] = {C1: {"Dockerfile": b"F", **big}}
    hub.repos["ns/nodf"] = {C1: {"app/Dockerfile": b"F"}}
    hub.repos["ns/cache"] = {C1: {"Dockerfile": b"F", ".cache/huggingface/x": b""}}
    hub.repos["ns/escape"] = {C1: {"Dockerfile": b"F"}}
    reasons = {}
    for name in ("many", "fat", "big", "nodf", "cache", "escape"):
        if name == "escape":
            hub.listing_extra.append({"type": "file", "oid": "0", "size": 1, "path": "../../evil"})
        exc = await rejection(source(hub), ModelRef("ns", name, C1), tmp_path / name)
        reasons[name] = exc.reason
    assert reasons == {
        "many": "too_many_files",
        "fat": "file_too_large",
        "big": "too_large",
        "nodf": "no_dockerfile",
        "cache": "path_reserved",
        "escape": "path_escape",
    }
    assert {m for m, _, _ in hub.requests} == {"GET"}
    assert all("/api/models/" in p for _, p, _ in hub.requests)
    assert gone(tmp_path.parent / "evil")


async def test_result_must_match_the_checked_listing(hub: HubServer, tmp_path: Path) -> None:
    """If snapshot_download's own listing differs from the checked one, the result is dropped."""
    hub.repos["ns/liar"] = {C1: {"Dockerfile": b"F"}}
    original = hub.lookup

    def lookup(repo: str, rev: str) -> tuple[int, str | None, dict[str, bytes] | None]:
        status, code, files = original(repo, rev)
        listings = sum(1 for _, p, _ in hub.requests if "/tree/" in p)
        if files is not None and listings >= 2:
            files = files | {"extra.txt": b"sneaky"}
        return status, code, files

    hub.lookup = lookup  # type: ignore[method-assign]
    exc = await rejection(source(hub), ModelRef("ns", "liar", C1), tmp_path / "m")
    assert (exc.reason, exc.detail) == (
        "incomplete_download",
        "0 missing, 1 unexpected, 0 of the wrong size (e.g. extra.txt)",
    )
