"""``FakeModelSource``: an in-memory model source for tests of code that fetches models."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from ._errors import ModelRejected, ModelSourceError
from ._ref import ModelRef

__all__ = ["FakeModelSource"]


def _write_tree(tree: Path, files: Mapping[str, bytes]) -> None:
    tree.mkdir()
    for rel, data in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class FakeModelSource:
    """Serves trees from ``repos``: ``{"ns/name": {revision: {path: bytes}}}``.

    A missing repo or revision raises ``repo_not_found`` / ``revision_not_found``, like the real
    sources. ``errors`` maps a model (``"ns/name@revision"``) to an error raised instead of
    downloading. ``calls`` records every download in order.
    """

    kind = "fake"

    def __init__(
        self,
        repos: Mapping[str, Mapping[str, Mapping[str, bytes]]],
        *,
        errors: Mapping[str, ModelSourceError] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self._repos = repos
        self._errors = dict(errors or {})
        self._delay_s = delay_s
        self.calls: list[ModelRef] = []

    async def download(self, ref: ModelRef, workdir: Path) -> Path:
        self.calls.append(ref)
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        if str(ref) in self._errors:
            raise self._errors[str(ref)].for_model(str(ref))
        revisions = self._repos.get(ref.repo_id)
        if revisions is None:
            raise ModelRejected("repo_not_found", model=str(ref))
        files = revisions.get(ref.revision)
        if files is None:
            raise ModelRejected("revision_not_found", model=str(ref))
        tree = workdir / "tree"
        await asyncio.to_thread(_write_tree, tree, files)
        return tree
