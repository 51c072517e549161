"""Dataset refresh: the epoch's benchmark datasets, generated in the process pool, atomically.

For the current epoch, each configured competition gets ``DATA_DIR/datasets/epoch-E/<COMP>/``
(``clean/``, ``degraded/``, ``manifest.json``) from the epoch seed, so a restart finds the same
files (or regenerates identical ones). The unprocessed input is scored like a model's output and
stored with the epoch. Then the epoch is ``ready`` and the scheduler starts. The previous epoch's
datasets (and the enhanced samples kept for its report) stay until the next epoch's are ready;
older ones are deleted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anyio
import structlog

from ..audio.dataset import DatasetSpec, SourceUnavailableError, generate_dataset
from ..audio.dataset.factory import build_sources
from ..audio.dataset.manifest import MANIFEST_NAME
from ..audio.dataset.store import CLEAN_DIR, DEGRADED_DIR
from ..audio.unprocessed import score_unprocessed
from ..competitions import get_competition
from ._context import Services

__all__ = ["refresh_datasets"]

log = structlog.get_logger(__name__)


def _complete(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file() and (path / CLEAN_DIR).is_dir()


def _link_copy(src: Path, dest: Path) -> None:
    """``src`` as ``dest`` (hard links, so no extra space), appearing atomically."""
    tmp = dest.with_name(f".{dest.name}.partial-copy")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=os.link)
    os.rename(tmp, dest)


def _remove_stale(root: Path, keep: set[str]) -> list[str]:
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


async def refresh_datasets(svc: Services) -> float | None:
    """One step: make the current epoch ready if it is not (None: nothing to do)."""
    state = svc.state
    epoch = state.epoch
    if epoch is None:
        return None
    root = svc.datasets_dir(epoch.number)
    paths = {c: root / c for c in state.competitions}
    complete = await anyio.to_thread.run_sync(lambda: all(_complete(p) for p in paths.values()))
    if epoch.status == "ready" and complete:
        return None
    if epoch.status not in ("open", "ready"):
        return None
    s = svc.settings.dataset
    sources = build_sources(
        s, svc.secrets, network=svc.settings.chain.network, data_dir=svc.data_dir, pool=svc.pool
    )
    try:
        # Leftovers of an interrupted generation (``.NAME.partial-*``) go first.
        await anyio.to_thread.run_sync(
            lambda: _remove_stale(root, {c for c, p in paths.items() if _complete(p)})
        )
        for name, path in paths.items():
            if await anyio.to_thread.run_sync(_complete, path):
                continue
            comp = get_competition(name)
            log.info("dataset.generating", epoch=epoch.number, competition=name, seed=epoch.seed)
            try:
                dataset = await generate_dataset(
                    DatasetSpec(comp, count=s.size, seed=epoch.seed, out=path, overwrite=True),
                    pool=svc.pool,
                    sources=sources,
                )
            except SourceUnavailableError as exc:
                previous = svc.datasets_dir(epoch.number - 1) / name
                if not await anyio.to_thread.run_sync(_complete, previous):
                    raise  # nothing to fall back on: retried with back-off
                await anyio.to_thread.run_sync(_link_copy, previous, path)
                log.error(
                    "dataset.source_down_kept_previous",
                    epoch=epoch.number,
                    competition=name,
                    source=exc.source,
                    error=str(exc),
                    previous_epoch=epoch.number - 1,
                )
                await svc.store.set_epoch(
                    epoch.number, note=f"{name}: {exc.source} down, previous dataset kept"
                )
                continue
            log.info(
                "dataset.ready",
                epoch=epoch.number,
                competition=name,
                files=len(dataset.manifest.files),
                seconds=round(sum(dataset.timings.values()), 2) if dataset.timings else None,
            )
    finally:
        with anyio.CancelScope(shield=True):
            await sources.aclose()
    unprocessed = await svc.store.unprocessed(epoch.number)
    for name, path in paths.items():
        if name in unprocessed:
            continue
        score = await score_unprocessed(
            svc.pool, get_competition(name), path / CLEAN_DIR, path / DEGRADED_DIR
        )
        await svc.store.save_unprocessed(epoch.number, name, score.to_dict())
        log.info(
            "dataset.unprocessed_scored",
            epoch=epoch.number,
            competition=name,
            averages={m.value: round(r.average, 4) for m, r in score.metrics.items()},
        )
    await svc.store.set_epoch(
        epoch.number, status="ready", datasets={c: str(p) for c, p in paths.items()}
    )
    state.epoch = await svc.store.epoch(epoch.number)
    state.epochs.bump()
    state.work.bump()
    await _cleanup(svc, epoch.number)
    return None


async def _cleanup(svc: Services, current: int) -> None:
    """Keep the current epoch's datasets and the previous one's (it is judged now and its
    report, ``soundsright report``, draws from it during this epoch); delete older ones."""
    keep = {f"epoch-{current}", f"epoch-{current - 1}"}
    removed = await anyio.to_thread.run_sync(_remove_stale, svc.data_dir / "datasets", keep)
    # the enhanced samples kept for the reports go with their epoch's dataset
    kept = {k.removeprefix("epoch-") for k in keep}
    await anyio.to_thread.run_sync(_remove_stale, svc.data_dir / "samples", kept)
    if removed:
        log.info("dataset.removed", directories=removed)
