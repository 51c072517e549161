"""The ``git`` model source: ``{base_url}/{namespace}/{name}`` at one commit, via the git CLI.

Steps, all in subprocesses under one total deadline (every git process is killed, with its
process group, when the deadline passes or the caller is cancelled):

1. ``git init --bare`` a private repository and ``git fetch --depth=1`` exactly the commit
   (objects are fsck-checked; the download directory is watched against the size cap);
2. ``git cat-file -t``: the id must name a commit;
3. ``git ls-tree -r -l -z``: every entry is checked before anything is written: links,
   submodules, unsafe paths, the caps and the root ``Dockerfile``;
4. the blobs are written with ``git cat-file --batch`` as regular files (mode 0644, or 0755 for
   executables). No checkout runs, so no ``.gitattributes`` filter, eol conversion or hook can
   change the bytes: the tree on disk is exactly the commit's tree.

No user or system git configuration is read, and credentials are never prompted for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog

from ._errors import ModelRejected, ModelSourceError, ModelUnavailable
from ._ref import ModelRef
from ._repo import RepoLimits, check_limits, check_repo_path
from ._watch import watch_size

__all__ = ["GitSource"]

log = structlog.get_logger(__name__)

_GIT_OPTS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "fetch.fsckObjects=true",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "core.askPass=",
)
_PASS_ENV = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY")
_CHUNK = 1 << 20
_REVISION_MISSING = ("not our ref", "couldn't find remote ref", "no such remote ref")
_REPO_MISSING = ("does not appear to be a git repository", "repository not found", "not found")


@dataclass(frozen=True, slots=True)
class _Blob:
    mode: str
    oid: str
    size: int
    path: str


class GitSource:
    """Fetch model repositories from a git server or a directory of bare repositories."""

    kind = "git"

    def __init__(
        self, *, base_url: str, limits: RepoLimits, timeout_s: float, git: str = "git"
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._limits = limits
        self._timeout_s = timeout_s
        self._git = git

    def url_for(self, ref: ModelRef) -> str:
        return f"{self._base_url}/{ref.namespace}/{ref.name}"

    async def download(self, ref: ModelRef, workdir: Path) -> Path:
        gitdir, tree = workdir / "git", workdir / "tree"
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env |= {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "HOME": str(workdir),
            "LC_ALL": "C",
        }
        run = _Runner(self._git, env)
        try:
            async with asyncio.timeout(self._timeout_s):
                await run.check("init", "--quiet", "--bare", str(gitdir))
                await self._fetch(run, ref, gitdir)
                kind = await run.check("--git-dir", str(gitdir), "cat-file", "-t", ref.revision)
                if kind.strip() != b"commit":
                    raise ModelRejected(
                        "revision_not_commit", f"{ref.revision} is a {kind.decode().strip()}"
                    )
                blobs = await self._list(run, gitdir, ref.revision)
                await _extract(run, gitdir, blobs, tree)
        except TimeoutError:
            raise ModelUnavailable(
                "timeout", f"git did not finish within {self._timeout_s:g} s", model=str(ref)
            ) from None
        except ModelSourceError as exc:
            raise exc.for_model(str(ref)) from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise ModelUnavailable("download_failed", str(exc), model=str(ref)) from exc
        return tree

    async def _fetch(self, run: _Runner, ref: ModelRef, gitdir: Path) -> None:
        limit = self._limits.max_total_bytes
        cap = limit + limit // 10 + (1 << 20)
        args = ["--git-dir", str(gitdir), "fetch", "--quiet", "--depth=1", "--no-tags"]
        args += ["--", self.url_for(ref), ref.revision]
        rc, _, err = await run.run(*args, watch=(gitdir, cap))
        if rc == 0:
            return
        text = err.decode("utf-8", "replace").strip()
        last = text.splitlines()[-1] if text else f"git fetch exited with {rc}"
        lower = text.lower()
        if any(s in lower for s in _REVISION_MISSING):
            raise ModelRejected("revision_not_found", f"no commit {ref.revision} in the repo")
        if any(s in lower for s in _REPO_MISSING):
            raise ModelRejected("repo_not_found", f"{self.url_for(ref)}: {last}")
        raise ModelUnavailable("download_failed", last)

    async def _list(self, run: _Runner, gitdir: Path, revision: str) -> list[_Blob]:
        out = await run.check(
            "--git-dir", str(gitdir), "ls-tree", "-r", "-l", "-z", "--full-tree", revision
        )
        blobs: list[_Blob] = []
        total = 0
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, otype, oid, size = meta.decode("ascii").split()
            try:
                path = raw_path.decode("utf-8")
            except UnicodeDecodeError:
                raise ModelRejected("bad_path", f"path {raw_path!r} is not UTF-8") from None
            check_repo_path(path)
            if ".git" in path.split("/"):
                raise ModelRejected("path_reserved", f"{path} is inside a .git directory")
            if mode == "120000":
                raise ModelRejected("symlink", f"{path} is a symbolic link")
            if mode == "160000" or otype != "blob":
                raise ModelRejected("submodule", f"{path} is a submodule ({otype})")
            if mode not in ("100644", "100755"):
                raise ModelRejected("special_file", f"{path} has mode {mode}")
            total += int(size)
            blobs.append(_Blob(mode, oid, int(size), path))
            check_limits(self._limits, path, int(size), len(blobs), total)
        if not any(b.path == "Dockerfile" for b in blobs):
            raise ModelRejected("no_dockerfile")
        return blobs


async def _extract(run: _Runner, gitdir: Path, blobs: list[_Blob], tree: Path) -> None:
    """Write every blob as a regular file below ``tree`` (which must not exist yet)."""
    await asyncio.to_thread(tree.mkdir)
    proc = await run.start("--git-dir", str(gitdir), "cat-file", "--batch", stdin=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        for blob in blobs:
            proc.stdin.write(blob.oid.encode("ascii") + b"\n")
            await proc.stdin.drain()
            header = (await proc.stdout.readline()).split()
            if header[1:] != [b"blob", str(blob.size).encode()]:
                raise ModelUnavailable("download_failed", f"git cat-file: {header!r}")
            fd = await asyncio.to_thread(_create, tree, blob)
            try:
                remaining = blob.size
                while remaining:
                    chunk = await proc.stdout.readexactly(min(_CHUNK, remaining))
                    remaining -= len(chunk)
                    await asyncio.to_thread(_write_all, fd, chunk)
            finally:
                os.close(fd)
            await proc.stdout.readexactly(1)
        proc.stdin.close()
        if await proc.wait() != 0:
            raise ModelUnavailable("download_failed", "git cat-file failed")
    finally:
        await run.reap(proc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _create(tree: Path, blob: _Blob) -> int:
    path = tree / blob.path
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o755 if blob.mode == "100755" else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, mode)


class _Runner:
    """Runs git in its own process group; kills the group if the caller gives up."""

    def __init__(self, git: str, env: dict[str, str]) -> None:
        self._git = git
        self._env = env

    async def start(self, *args: str, stdin: bool = False) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            self._git,
            *_GIT_OPTS,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE if not stdin else asyncio.subprocess.DEVNULL,
            env=self._env,
            start_new_session=True,
        )

    async def reap(self, proc: asyncio.subprocess.Process) -> None:
        """Kill the process group unless it has exited, then wait for the process."""
        if proc.returncode is None:  # not reaped yet, so the group id cannot have been reused
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.shield(proc.wait())

    async def run(
        self, *args: str, watch: tuple[Path, int] | None = None
    ) -> tuple[int, bytes, bytes]:
        proc = await self.start(*args)
        try:
            if watch is None:
                out, err = await proc.communicate()
            else:
                root, cap = watch
                out, err = await watch_size(
                    proc.communicate(), root, cap, lambda: os.killpg(proc.pid, signal.SIGKILL)
                )
        finally:
            await self.reap(proc)
        assert proc.returncode is not None
        return proc.returncode, out, err

    async def check(self, *args: str) -> bytes:
        rc, out, err = await self.run(*args)
        if rc != 0:
            text = err.decode("utf-8", "replace").strip() or f"exit status {rc}"
            raise ModelUnavailable("download_failed", f"git {args[-1]}: {text.splitlines()[-1]}")
        return out
