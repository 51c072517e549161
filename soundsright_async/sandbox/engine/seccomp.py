"""The seccomp profile of model containers: the engine's default profile with user namespaces
(and every other new namespace) denied.

Podman's default profile (``/usr/share/containers/seccomp.json``, containers-common) allows
``unshare``, ``clone``, ``clone3`` and ``setns`` without conditions, so ``unshare -r`` inside a
model container gives uid 0 and a full capability set in a fresh user namespace (the kernel's
attack surface behind those capabilities: mounts, netfilter, ...). This profile keeps every
other rule of the default and replaces those four:

- ``clone`` and ``unshare``: allowed only without namespace flags (Docker's own default rule:
  ``flags & 0x7E020000 == 0``), ``EPERM`` with ``CLONE_NEWUSER``, the default ``ENOSYS`` else;
- ``clone3``: ``ENOSYS`` (its flags are in memory seccomp cannot read; glibc falls back to
  ``clone``);
- ``setns``: ``EPERM``.

Pure: ``deny_namespaces`` transforms a parsed profile; the engine reads the base file and sends
the result (``tests/test_sandbox_engine.py`` checks the transform, the container tests prove
``unshare -r`` fails).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["CLONE_NEWUSER", "DEFAULT_BASE_PROFILE", "NAMESPACE_FLAGS", "deny_namespaces"]

DEFAULT_BASE_PROFILE = "/usr/share/containers/seccomp.json"
CLONE_NEWUSER = 0x10000000
NAMESPACE_FLAGS = 0x7E020000
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (Docker's mask)."""
_REPLACED = frozenset({"clone", "clone3", "unshare", "setns"})
_EPERM, _ENOSYS = 1, 38


def _masked(mask: int, want: int) -> list[dict[str, Any]]:
    return [{"index": 0, "value": mask, "valueTwo": want, "op": "SCMP_CMP_MASKED_EQ"}]


def deny_namespaces(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (an OCI/Docker seccomp profile) with the namespace syscalls replaced.
    Raises ``ValueError`` when ``base`` is not a profile."""
    if not isinstance(base.get("syscalls"), list) or "defaultAction" not in base:
        raise ValueError("not a seccomp profile (no defaultAction / syscalls)")
    profile = copy.deepcopy(base)
    rules: list[dict[str, Any]] = []
    for rule in profile["syscalls"]:
        names = [n for n in rule.get("names") or [] if n not in _REPLACED]
        if names:
            rules.append(rule | {"names": names})
    rules += [
        {
            "names": ["clone", "unshare"],
            "action": "SCMP_ACT_ALLOW",
            "args": _masked(NAMESPACE_FLAGS, 0),
        },
        {
            "names": ["clone", "unshare"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": _EPERM,
            "args": _masked(CLONE_NEWUSER, CLONE_NEWUSER),
        },
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS},
        {"names": ["setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
    ]
    profile["syscalls"] = rules
    return profile
