"""The model-source seam: put a model repository's tree, at one exact commit, on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from ._ref import ModelRef

__all__ = ["ModelSource"]


@runtime_checkable
class ModelSource(Protocol):
    """Fetches model repositories. Adapters: ``huggingface``, ``git``; test double: ``fake``.

    ``download(ref, workdir)`` writes the repository tree at ``ref.revision`` to a new directory
    inside ``workdir`` (an empty directory the caller owns and removes) and returns its path. It
    enforces the source's caps and total deadline, raises ``ModelRejected`` or
    ``ModelUnavailable``, and never returns a partial tree. Repository rules and hashing are
    applied by the caller (``fetch_model``), not by the source.
    """

    @property
    def kind(self) -> str:
        """``"huggingface"``, ``"git"`` or ``"fake"``."""
        ...

    async def download(self, ref: ModelRef, workdir: Path) -> Path: ...
