"""Fetching a model into a checked tree, and the per-epoch cache of fetched models."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog

from ._errors import ModelSourceError
from ._ref import ModelRef
from ._repo import RepoDigest, RepoLimits, inspect_repo
from .base import ModelSource

__all__ = ["FetchedModel", "ModelCache", "fetch_model"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FetchedModel:
    """A model repository on disk at ``path``, checked against the repository rules."""

    ref: ModelRef
    path: Path
    digest: RepoDigest


async def fetch_model(
    source: ModelSource, ref: ModelRef, dest: Path, limits: RepoLimits
) -> FetchedModel:
    """Download ``ref`` with ``source``, apply the repository rules, hash it, and move the tree
    to ``dest`` (which must not exist). On any failure ``dest`` is not created and the scratch
    directory beside it is removed; raises ``ModelRejected`` / ``ModelUnavailable``."""
    workdir = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.partial"
    await asyncio.to_thread(_make_workdir, workdir)
    log.info("model.fetch.started", model=str(ref), source=source.kind)
    try:
        tree = await source.download(ref, workdir)
        try:
            digest = await inspect_repo(tree, limits)
        except ModelSourceError as exc:
            raise exc.for_model(str(ref)) from None
        await asyncio.to_thread(os.rename, tree, dest)
    except ModelSourceError as exc:
        log.info("model.fetch.rejected", model=str(ref), reason=exc.reason, detail=exc.detail)
        raise
    finally:
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, workdir, True))
    log.info(
        "model.fetched",
        model=str(ref),
        content_hash=digest.content_hash,
        bytes=digest.total_bytes,
        files=digest.file_count,
    )
    return FetchedModel(ref=ref, path=dest, digest=digest)


def _make_workdir(workdir: Path) -> None:
    workdir.parent.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(mode=0o700)


class ModelCache:
    """One fetch per model per competition epoch, keyed by ``(namespace, name, revision)``.

    ``get(ref, epoch=...)`` returns the cached outcome for the epoch: the ``FetchedModel`` or the
    same ``ModelSourceError`` again (a rejected or unavailable model is not fetched twice in one
    epoch). Concurrent callers for the same model share one download; at most
    ``max_concurrent`` downloads run at once. When a newer epoch is
    asked for, every tree of the older epoch is deleted. Trees live in
    ``root/<namespace>/<name>/<revision>``.
    """

    def __init__(
        self, source: ModelSource, root: Path, limits: RepoLimits, *, max_concurrent: int = 2
    ) -> None:
        self._source = source
        self._slots = asyncio.Semaphore(max_concurrent)
        self._root = root
        self._limits = limits
        self._epoch: int | None = None
        self._outcomes: dict[ModelRef, FetchedModel | ModelSourceError] = {}
        self._locks: dict[ModelRef, asyncio.Lock] = {}
        self.downloads = 0
        """How many downloads were started (for tests and the status report)."""

    @property
    def epoch(self) -> int | None:
        return self._epoch

    async def get(self, ref: ModelRef, *, epoch: int) -> FetchedModel:
        if self._epoch is not None and epoch < self._epoch:
            raise RuntimeError(f"epoch {epoch} is older than the current epoch {self._epoch}")
        if epoch != self._epoch:
            self._epoch = epoch
            await self._evict()
        lock = self._locks.setdefault(ref, asyncio.Lock())
        async with lock:
            outcome = self._outcomes.get(ref)
            if outcome is None:
                outcome = self._outcomes[ref] = await self._fetch(ref)
        if isinstance(outcome, ModelSourceError):
            raise outcome.for_model(str(ref))
        return outcome

    async def _fetch(self, ref: ModelRef) -> FetchedModel | ModelSourceError:
        dest = self._root / ref.namespace / ref.name / ref.revision
        await asyncio.to_thread(shutil.rmtree, dest, True)  # left over from a crash
        async with self._slots:
            self.downloads += 1
            try:
                return await fetch_model(self._source, ref, dest, self._limits)
            except ModelSourceError as exc:
                return exc

    async def _evict(self) -> None:
        """Forget the finished outcomes and delete their trees. A fetch still running when the
        epoch turns is recorded for the new epoch (the tree at a commit does not change)."""
        old = [o for o in self._outcomes.values() if isinstance(o, FetchedModel)]
        self._outcomes.clear()
        for ref in [r for r, lock in self._locks.items() if not lock.locked()]:
            del self._locks[ref]
        for model in old:
            await asyncio.to_thread(shutil.rmtree, model.path, True)
