"""Errors of the model sources. Both kinds carry a stable ``reason`` code and a human ``detail``::

    SoundsrightError
    └── ModelSourceError        a model could not be turned into a checked tree on disk
        ├── ModelRejected       the model itself is unacceptable: a malformed reference, a revision
        │                       or repo that does not exist, an unsafe or oversized repository
        └── ModelUnavailable    the model could not be fetched: deadline, network or server error

The reason codes are listed in ``REJECTION_REASONS`` and documented in ``docs/models.md``.
"""

from __future__ import annotations

from .._exceptions import SoundsrightError

__all__ = ["REJECTION_REASONS", "ModelRejected", "ModelSourceError", "ModelUnavailable"]

REJECTION_REASONS: dict[str, str] = {
    # the model reference, checked before any download
    "bad_repo_id": "namespace or name is not a valid repository name",
    "revision_short": "revision is an abbreviated commit id, not the full 40 characters",
    "revision_uppercase": "revision is a commit id in upper case; it must be lower-case hex",
    "revision_not_hex": "revision is not a commit id (a branch or tag name?)",
    # the remote
    "repo_not_found": "the repository does not exist or is not accessible",
    "revision_not_found": "the repository has no commit with that id",
    "revision_not_commit": "the id names a git object that is not a commit",
    # the repository contents
    "symlink": "the repository contains a symbolic link",
    "special_file": "the repository contains a device file, FIFO or socket",
    "submodule": "the repository contains a submodule (gitlink)",
    "path_escape": "a path is absolute or has an empty, '.' or '..' component",
    "bad_path": "a path is not valid UTF-8 or contains a NUL byte",
    "path_reserved": "a path is reserved by the download tool (.cache/huggingface/)",
    "too_many_files": "the repository has more files than allowed",
    "file_too_large": "a file is larger than allowed",
    "too_large": "the repository's total size is larger than allowed",
    "no_dockerfile": "there is no regular file named Dockerfile at the repository root",
    "changed_during_check": "a file changed while it was being hashed",
    # fetching (ModelUnavailable)
    "timeout": "the download did not finish within its deadline",
    "download_failed": "the download failed (network, server or git error)",
    "incomplete_download": "the downloaded files do not match the repository listing",
}


class ModelSourceError(SoundsrightError):
    """A model could not be fetched and checked. ``reason`` is a stable code, ``detail`` prose."""

    def __init__(self, reason: str, detail: str = "", *, model: str | None = None) -> None:
        if reason not in REJECTION_REASONS:
            raise RuntimeError(f"unknown rejection reason {reason!r}")
        self.reason = reason
        self.detail = detail or REJECTION_REASONS[reason]
        self._model = model
        prefix = f"{model}: " if model else ""
        super().__init__(f"{prefix}{reason}: {self.detail}")

    @property
    def model(self) -> str:
        """The model (``ns/name@revision``) the error is about; raises if it was never set."""
        if self._model is None:
            raise RuntimeError(f"{type(self).__name__}.model was not set")
        return self._model

    def for_model(self, model: str) -> ModelSourceError:
        """The same error, attributed to ``model`` (a new instance of the same class)."""
        return type(self)(self.reason, self.detail, model=model)


class ModelRejected(ModelSourceError):
    """The model breaks a rule; fetching it again will not help."""


class ModelUnavailable(ModelSourceError):
    """The model could not be fetched this time (deadline, network, server)."""
