"""Model sources, repository rules and content hashing (the container engine comes later).

``ModelSource`` (``base``) is the seam; ``GitSource`` and ``HuggingFaceSource`` are the adapters
and ``FakeModelSource`` the in-memory double. ``fetch_model`` turns a ``ModelRef`` into a checked,
hashed tree on disk; ``ModelCache`` does that once per model per epoch. ``scan_repo`` /
``inspect_repo`` apply the repository rules to a local directory.
"""

from __future__ import annotations

from ._errors import REJECTION_REASONS, ModelRejected, ModelSourceError, ModelUnavailable
from ._hashing import CHECKPOINT_EXTENSIONS, ContentHasher, content_hash, is_checkpoint
from ._ref import ModelRef
from ._repo import RepoDigest, RepoLimits, check_repo_path, inspect_repo, scan_repo
from .base import ModelSource
from .cache import FetchedModel, ModelCache, fetch_model
from .fake import FakeModelSource
from .git import GitSource
from .huggingface import HuggingFaceSource

__all__ = [
    "CHECKPOINT_EXTENSIONS",
    "REJECTION_REASONS",
    "ContentHasher",
    "FakeModelSource",
    "FetchedModel",
    "GitSource",
    "HuggingFaceSource",
    "ModelCache",
    "ModelRef",
    "ModelRejected",
    "ModelSource",
    "ModelSourceError",
    "ModelUnavailable",
    "RepoDigest",
    "RepoLimits",
    "check_repo_path",
    "content_hash",
    "fetch_model",
    "inspect_repo",
    "is_checkpoint",
    "scan_repo",
]
