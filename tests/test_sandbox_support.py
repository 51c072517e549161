"""Test support for the sandbox tests (no tests here): a local git hub of bare repositories and a
local HTTP server that speaks the part of the HuggingFace hub API that ``snapshot_download`` uses
(``huggingface_hub`` 2.x with a commit-id revision: ``GET /api/models/{repo}/tree/{rev}``, then per
file ``HEAD`` and ``GET /{repo}/resolve/{rev}/{path}``). Loopback and temp dirs only."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from soundsright_async.sandbox import RepoLimits

LIMITS = RepoLimits(max_total_bytes=1 << 20, max_files=100, max_file_bytes=1 << 19)

GIT_ENV = {
    "PATH": os.environ["PATH"],
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class Link:
    """A symbolic link to ``target`` in a test repository."""

    target: str


Tree = Mapping[str, "bytes | Link"]


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)
    return out.stdout.decode().strip()


class GitHub:
    """Bare repositories at ``root/hub/<ns>/<name>``, built from working repos in ``root/work``."""

    def __init__(self, root: Path) -> None:
        self.hub = root / "hub"
        self._work = root / "work"

    def commit(self, repo_id: str, files: Tree, *, executable: tuple[str, ...] = ()) -> str:
        work, bare = self._work / repo_id, self.hub / repo_id
        if not work.exists():
            work.mkdir(parents=True)
            git("init", "-q", "-b", "main", cwd=work)
            bare.mkdir(parents=True)
            git("init", "-q", "--bare", cwd=bare)
        git("rm", "-rq", "--ignore-unmatch", ".", cwd=work)
        for rel, data in files.items():
            path = work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Link):
                os.symlink(data.target, path)
            else:
                path.write_bytes(data)
                path.chmod(0o755 if rel in executable else 0o644)
        git("add", "-A", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", "c", cwd=work)
        git("push", "-q", str(bare), "main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


def tree_of(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` (there must be nothing else)."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            assert not os.path.islink(os.path.join(dirpath, name))
        for name in filenames:
            path = Path(dirpath, name)
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


# -- a HuggingFace hub on loopback ------------------------------------------------------------


@dataclass
class HubServer:
    """``repos``: ``{"ns/name": {commit: {path: bytes}}}``. ``cut``: ``{path: mode}`` with mode
    ``"short"`` (the body ends early, no Content-Length) or ``"drop"`` (full Content-Length, then
    the connection is dropped mid-file, on every attempt). ``requests`` logs what was asked."""

    repos: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    cut: dict[str, str] = field(default_factory=dict)
    listing_extra: list[dict[str, object]] = field(default_factory=list)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def lookup(self, repo: str, rev: str) -> tuple[int, str | None, dict[str, bytes] | None]:
        if repo not in self.repos:
            return 404, "RepoNotFound", None
        if rev not in self.repos[repo]:
            return 404, "RevisionNotFound", None
        return 200, None, self.repos[repo][rev]


def _oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _error(self, status: int, code: str | None) -> None:
            body = json.dumps({"error": code or "not found"}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> None:
            path = urlsplit(self.path).path
            hub.requests.append((self.command, path, self.headers.get("Authorization")))
            parts = [unquote(p) for p in path.split("/")[1:]]
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                self._tree(f"{parts[2]}/{parts[3]}", parts[5])
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._file(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            else:
                self._error(404, None)

        def _tree(self, repo: str, rev: str) -> None:
            status, code, files = hub.lookup(repo, rev)
            if files is None:
                return self._error(status, code)
            entries: list[dict[str, object]] = []
            parents = {p.rsplit("/", i)[0] for p in files for i in range(1, p.count("/") + 1)}
            dirs = sorted(parents)
            entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in dirs]
            entries += [
                {"type": "file", "oid": _oid(data), "size": len(data), "path": p}
                for p, data in sorted(files.items())
            ]
            body = json.dumps(entries + hub.listing_extra).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, repo: str, rev: str, rel: str) -> None:
            status, code, files = hub.lookup(repo, rev)
            if files is None:
                return self._error(status, code)
            if rel not in files:
                return self._error(404, "EntryNotFound")
            data = files[rel]
            mode = hub.cut.get(rel) if self.command == "GET" else None
            self.send_response(200)
            self.send_header("X-Repo-Commit", rev)
            self.send_header("ETag", f'"{_oid(data)}"')
            if mode == "short":
                self.send_header("Connection", "close")
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if mode is None:
                self.wfile.write(data)
                return
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

        do_GET = do_HEAD = _route

    return Handler


@contextmanager
def serve_hub(hub: HubServer) -> Iterator[HubServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-hub")
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
