"""The ``huggingface`` model source: ``huggingface_hub.snapshot_download`` at one exact commit.

The download runs in its own thread under a total deadline:

1. the repository tree at the commit is listed (``HfApi.list_repo_tree``) and checked before any
   file is fetched: unsafe or reserved paths, the file-count, file-size and total caps, and the
   root ``Dockerfile``;
2. ``snapshot_download`` fetches the files into a fresh directory (no shared cache, no token file:
   only the configured token or none) while the directory is watched against the size cap;
3. the result must match the listing exactly (same paths, same sizes), else it is discarded.

At the deadline (or on a cap breach or cancellation) the thread is told to stop; it stops at the
next received chunk (or the HTTP read timeout) and then removes its work directory itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import threading
from pathlib import Path
from typing import Any, cast

import httpx2
import structlog
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from pydantic import SecretStr

from .. import __version__
from ._errors import ModelRejected, ModelSourceError, ModelUnavailable
from ._ref import ModelRef
from ._repo import RepoLimits, check_limits, check_repo_path
from ._watch import run_in_own_thread, watch_size

__all__ = ["HuggingFaceSource"]

log = structlog.get_logger(__name__)

_RESERVED = ".cache/huggingface/"  # snapshot_download keeps its bookkeeping here in local_dir


class _Stopped(Exception):
    """Raised inside the download thread once it has been told to stop."""


class HuggingFaceSource:
    """Fetch model repositories from the HuggingFace hub (or a hub-compatible ``endpoint``)."""

    kind = "huggingface"

    def __init__(
        self,
        *,
        endpoint: str,
        limits: RepoLimits,
        timeout_s: float,
        token: SecretStr | None = None,
        max_workers: int = 4,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._limits = limits
        self._timeout_s = timeout_s
        self._token = token
        self._max_workers = max_workers

    async def download(self, ref: ModelRef, workdir: Path) -> Path:
        stop = threading.Event()
        job = _Download(self, ref, workdir, stop)
        limit = self._limits.max_total_bytes
        cap = limit + limit // 10 + (16 << 20)  # the files plus the tool's bookkeeping
        future = run_in_own_thread(job.run, name=f"hf-download {ref}")
        finished = False
        try:
            async with asyncio.timeout(self._timeout_s):
                tree = await watch_size(future, workdir, cap, stop.set)
            finished = True
            return tree
        except TimeoutError:
            raise ModelUnavailable(
                "timeout", f"download did not finish within {self._timeout_s:g} s", model=str(ref)
            ) from None
        except ModelSourceError as exc:
            raise exc.for_model(str(ref)) from None
        finally:
            if not finished:  # deadline, cap, error or cancellation: the thread must stop
                stop.set()


class _Download:
    """One blocking download; everything here runs in the download thread."""

    def __init__(
        self, source: HuggingFaceSource, ref: ModelRef, workdir: Path, stop: threading.Event
    ) -> None:
        self._src = source
        self._ref = ref
        self._workdir = workdir
        self._stop = stop
        token = source._token
        self._token: str | bool = token.get_secret_value() if token is not None else False

    def run(self) -> Path:
        try:
            return self._run()
        except ModelSourceError:
            raise
        except _Stopped:
            raise ModelUnavailable("timeout", "download stopped") from None
        except RevisionNotFoundError:
            raise ModelRejected(
                "revision_not_found", f"no commit {self._ref.revision} in {self._ref.repo_id}"
            ) from None
        except RepositoryNotFoundError:
            raise ModelRejected(
                "repo_not_found", f"{self._ref.repo_id} does not exist or is not accessible"
            ) from None
        except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as exc:
            text = str(exc).strip().splitlines()
            raise ModelUnavailable(
                "download_failed", f"{type(exc).__name__}: {text[0] if text else ''}"
            ) from exc
        finally:
            if self._stop.is_set():
                shutil.rmtree(self._workdir, ignore_errors=True)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _run(self) -> Path:
        api = HfApi(
            endpoint=self._src._endpoint,
            token=self._token,
            library_name="soundsright-async",
            library_version=__version__,
        )
        listing = self._list(api)
        tree = self._workdir / "tree"
        tree.mkdir()
        snapshot_download(
            self._ref.repo_id,
            repo_type="model",
            revision=self._ref.revision,
            local_dir=tree,
            cache_dir=self._workdir / "hf-cache",
            endpoint=self._src._endpoint,
            token=self._token,
            max_workers=self._src._max_workers,
            tqdm_class=cast(Any, _progress_class(self._stop)),
            library_name="soundsright-async",
            library_version=__version__,
        )
        self._check_stop()
        shutil.rmtree(tree / _RESERVED, ignore_errors=True)
        if (tree / ".cache").is_dir() and not any((tree / ".cache").iterdir()):
            (tree / ".cache").rmdir()
        _compare(tree, listing)
        return tree

    def _list(self, api: HfApi) -> dict[str, int]:
        """The files of the commit as ``{path: size}``, checked before anything is downloaded."""
        limits = self._src._limits
        files: dict[str, int] = {}
        total = 0
        tree = api.list_repo_tree(self._ref.repo_id, recursive=True, revision=self._ref.revision)
        for item in tree:
            self._check_stop()
            if not isinstance(item, RepoFile):
                continue
            path = item.path
            check_repo_path(path)
            if path.startswith(_RESERVED) or ".git" in path.split("/"):
                raise ModelRejected("path_reserved", f"{path} is a reserved path")
            size = item.lfs.size if item.lfs is not None else item.size
            files[path] = size
            total += size
            check_limits(limits, path, size, len(files), total)
        if "Dockerfile" not in files:
            raise ModelRejected("no_dockerfile")
        return files


def _compare(tree: Path, listing: dict[str, int]) -> None:
    """The downloaded tree must hold exactly the listed files with the listed sizes."""
    found: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        rel_dir = os.path.relpath(dirpath, tree)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found[rel] = st.st_size if stat.S_ISREG(st.st_mode) else -1
    missing = sorted(set(listing) - set(found))
    extra = sorted(set(found) - set(listing))
    wrong = sorted(p for p in set(listing) & set(found) if listing[p] != found[p])
    if missing or extra or wrong:
        first = (missing or extra or wrong)[0]
        raise ModelUnavailable(
            "incomplete_download",
            f"{len(missing)} missing, {len(extra)} unexpected, {len(wrong)} of the wrong size "
            f"(e.g. {first})",
        )


def _progress_class(stop: threading.Event) -> type:
    """A silent progress-bar class for ``snapshot_download``; ``update`` raises once stopped.

    ``snapshot_download`` routes every received chunk through its byte bars, so this is how the
    download thread notices that it must stop.
    """

    class _Progress:
        def __init__(self, *args: object, **kwargs: Any) -> None:
            self.n = 0
            self.total = kwargs.get("total")
            self.format_dict: dict[str, object] = {}

        def update(self, n: float | None = 1) -> None:
            if stop.is_set():
                raise _Stopped

        def refresh(self, *args: object, **kwargs: object) -> None:
            if stop.is_set():
                raise _Stopped

        def close(self) -> None:
            pass

        def set_description(self, *args: object, **kwargs: object) -> None:
            pass

        def set_description_str(self, *args: object, **kwargs: object) -> None:
            pass

        def set_postfix_str(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> _Progress:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return _Progress
