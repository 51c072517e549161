"""``ModelRef``: which model, at which exact commit. Invalid references never reach a download."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import ModelRejected

__all__ = ["ModelRef"]

# The hub's repository-name rule: alphanumerics, '-', '_', '.'; no '--' or '..'; '-' and '.'
# cannot start or end a name; at most 96 characters.  This also keeps a name safe to put in a
# URL or path ("{base_url}/{namespace}/{name}"): no '/', no '..', no leading '-'.
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def _check_name(kind: str, value: str) -> None:
    if not _NAME.match(value) or "--" in value or ".." in value:
        raise ModelRejected(
            "bad_repo_id",
            f"{kind} {value!r} is not a valid repository name (letters, digits, '-', '_', '.'; "
            "no '--' or '..'; at most 96 characters)",
        )


def _check_revision(value: str) -> None:
    if _COMMIT.match(value):
        return
    if _HEX.match(value) and len(value) == 40:
        raise ModelRejected(
            "revision_uppercase", f"revision {value!r} must be lower-case hex ({value.lower()})"
        )
    if _HEX.match(value) and len(value) < 40:
        raise ModelRejected(
            "revision_short",
            f"revision {value!r} is an abbreviated commit id; give the full 40-character id",
        )
    raise ModelRejected(
        "revision_not_hex",
        f"revision {value!r} is not a commit id (a branch or tag name?); give the full "
        "40-character lower-case commit id",
    )


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model repository at one commit. Construction raises ``ModelRejected`` when invalid."""

    namespace: str
    name: str
    revision: str

    def __post_init__(self) -> None:
        _check_name("namespace", self.namespace)
        _check_name("name", self.name)
        _check_revision(self.revision)

    @classmethod
    def parse(cls, repo: str, revision: str) -> ModelRef:
        """From ``"NS/NAME"`` and a revision."""
        namespace, sep, name = repo.partition("/")
        if not sep or "/" in name:
            raise ModelRejected("bad_repo_id", f"{repo!r} is not of the form NAMESPACE/NAME")
        return cls(namespace, name, revision)

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}@{self.revision}"
