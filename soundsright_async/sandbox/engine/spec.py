"""Pure construction of what the engine is asked to do: labels, names, the network and the
locked-down container configuration (Docker Engine API shapes, also served by Podman).

Nothing here does I/O, so the lock-down is unit-tested exactly (``tests/test_sandbox_engine.py``)
and the real adapter sends these dicts unchanged.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BASE_IMAGE",
    "LABEL_COMPETITION",
    "LABEL_HOTKEY",
    "LABEL_MANAGED",
    "LABEL_OWNER",
    "LABEL_TMPFS",
    "MODEL_PORT",
    "MODEL_USER",
    "GpuRequest",
    "SandboxLimits",
    "container_config",
    "image_tag",
    "network_config",
    "project_labels",
    "tmpfs_paths",
    "unique_suffix",
]

MODEL_PORT = 6500
"""The port the model listens on inside its container (the template's port; never rewritten)."""
MODEL_USER = "10002:10002"
BASE_IMAGE = "localhost/soundsright-base:latest"
"""The image models build ``FROM`` by default (``scripts/base-image.sh``)."""
LABEL_MANAGED = "soundsright.managed"
LABEL_OWNER = "soundsright.owner"
LABEL_ENGINE = "soundsright.engine"
"""The configured engine name: two engines sharing one storage (two services on one host)
never sweep each other's containers."""
LABEL_COMPETITION = "soundsright.competition"
LABEL_HOTKEY = "soundsright.hotkey"
LABEL_TMPFS = "soundsright.tmpfs"
"""Image label a model may set: space-separated absolute paths that get a size-limited tmpfs."""

EngineKind = Literal["podman", "docker"]
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:=-]{0,128}$")
_FORBIDDEN_TMPFS = ("/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/lib", "/sbin")
_MAX_TMPFS = 16


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """One GPU for one container: a CDI device (``nvidia.com/gpu=ID``, Podman and Docker >= 25)
    or an NVIDIA device request (Docker with the NVIDIA runtime)."""

    device_id: str
    driver: Literal["cdi", "nvidia"] = "cdi"

    def device_request(self) -> dict[str, Any]:
        if self.driver == "cdi":
            return {"Driver": "cdi", "DeviceIDs": [f"nvidia.com/gpu={self.device_id}"]}
        return {"Driver": "nvidia", "DeviceIDs": [self.device_id], "Capabilities": [["gpu"]]}


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource limits of one model container."""

    memory_bytes: int = 8 * 1024**3
    cpus: float = 2.0
    pids: int = 256
    tmpfs_bytes: int = 2 * 1024**3
    shm_bytes: int = 64 * 1024**2
    log_bytes: int = 1024**2
    extra_tmpfs: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.memory_bytes < 6 * 1024**2:
            raise ValueError("memory_bytes must be at least 6 MiB")
        if not 0 < self.cpus <= 1024 or self.pids < 8 or self.tmpfs_bytes < 1024**2:
            raise ValueError("cpus must be in (0, 1024], pids >= 8, tmpfs_bytes >= 1 MiB")


def unique_suffix() -> str:
    return secrets.token_hex(5)


def project_labels(owner: str, **extra: str) -> dict[str, str]:
    """The labels on everything the project creates; cleanup selects on them."""
    labels = {LABEL_MANAGED: "true", LABEL_OWNER: owner}
    for key, value in extra.items():
        if not _LABEL_VALUE.match(value):
            raise ValueError(f"label {key}={value!r} has characters outside [A-Za-z0-9_.:=-]")
        labels[f"soundsright.{key}"] = value
    return labels


def image_tag(competition: str, hotkey: str, content_hash: str) -> str:
    """``localhost/soundsright-model:<competition>-<hotkey>-<hash12>``, lower-case, <= 128.

    Each part keeps only ``[a-z0-9]`` runs joined by ``_``, so the tag is also a valid OCI
    ``ref.name`` (no two separators in a row: a base64 hash starting with ``/`` or ``+`` once
    made ``-_`` and buildah refused the build as an invalid image)."""

    def part(text: str, keep: int) -> str:
        return "_".join(re.findall(r"[a-z0-9]+", text.lower()))[:keep].strip("_") or "x"

    tag = f"{part(competition, 32)}-{part(hotkey, 64)}-{part(content_hash, 12)}"
    return f"localhost/soundsright-model:{tag}"


def network_config(name: str, bridge: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """An ``--internal`` bridge network (no route out) whose host interface is ``bridge``."""
    if not re.fullmatch(r"[a-z0-9]{1,15}", bridge):
        raise ValueError(f"bridge name {bridge!r} must be 1-15 lower-case letters or digits")
    return {
        "Name": name,
        "Driver": "bridge",
        "Internal": True,
        "CheckDuplicate": True,
        "EnableIPv6": False,
        "Labels": dict(labels),
        "Options": {"com.docker.network.bridge.name": bridge},
    }


def tmpfs_paths(
    extra: Sequence[str], image_volumes: Sequence[str], image_label: str | None
) -> list[str]:
    """``/tmp``, ``/var/tmp`` and ``/run`` plus the configured, the image's ``VOLUME`` and its
    ``soundsright.tmpfs`` paths (so nothing is written to an anonymous volume on the host disk).
    Raises ``ValueError`` for a relative, unnormalised or system path, or too many paths."""
    wanted = ["/tmp", "/var/tmp", "/run", *extra, *image_volumes, *(image_label or "").split()]
    out: list[str] = []
    for path in wanted:
        norm = posixpath.normpath(path)
        if not path.startswith("/") or norm != path.rstrip("/") or "," in path or ":" in path:
            raise ValueError(f"tmpfs path {path!r} is not a plain absolute path")
        if any(
            norm == bad or (bad != "/" and norm.startswith(bad + "/")) for bad in _FORBIDDEN_TMPFS
        ):
            raise ValueError(f"tmpfs path {path!r} is a system directory")
        if norm not in out:
            out.append(norm)
    if len(out) > _MAX_TMPFS:
        raise ValueError(f"more than {_MAX_TMPFS} tmpfs paths")
    return out


def container_config(
    *,
    image: str,
    network: str,
    labels: Mapping[str, str],
    limits: SandboxLimits,
    tmpfs: Sequence[str],
    engine_kind: EngineKind,
    gpu: GpuRequest | None = None,
    seccomp: str | None = None,
) -> dict[str, Any]:
    """The ``POST /containers/create`` body for a model: its own internal network, no published
    ports, memory/CPU/pids limits, read-only root with size-limited tmpfs, every capability
    dropped, ``no-new-privileges``, user 10002:10002, bounded logs, optionally one GPU.
    ``seccomp``: the profile (Podman: a file path on the engine's host; Docker: the JSON text),
    ``seccomp.deny_namespaces`` of the default; None keeps the engine's default profile."""
    tmpfs_opts = f"rw,nosuid,nodev,size={limits.tmpfs_bytes},mode=1777"
    host: dict[str, Any] = {
        "NetworkMode": network,
        "PortBindings": {},
        "PublishAllPorts": False,
        "Memory": limits.memory_bytes,
        "MemorySwap": limits.memory_bytes,  # no swap on top of the limit
        "NanoCpus": int(limits.cpus * 1e9),
        "PidsLimit": limits.pids,
        "ReadonlyRootfs": True,
        "Tmpfs": {path: tmpfs_opts for path in tmpfs},
        "ShmSize": limits.shm_bytes,
        "CapDrop": ["ALL"],
        "CapAdd": [],
        "SecurityOpt": ["no-new-privileges"] + ([f"seccomp={seccomp}"] if seccomp else []),
        "Privileged": False,
        "Binds": [],
        "Devices": [],
        "DeviceRequests": [gpu.device_request()] if gpu is not None else [],
        "RestartPolicy": {"Name": "no"},
        "AutoRemove": False,
        "LogConfig": {
            "Type": "k8s-file" if engine_kind == "podman" else "json-file",
            "Config": {"max-size": str(limits.log_bytes)}
            | ({} if engine_kind == "podman" else {"max-file": "1"}),
        },
    }
    return {
        "Image": image,
        "User": MODEL_USER,
        "Labels": dict(labels),
        "Env": ["HOME=/tmp", "TMPDIR=/tmp", "PYTHONDONTWRITEBYTECODE=1"],
        "ExposedPorts": {f"{MODEL_PORT}/tcp": {}},
        "NetworkDisabled": False,
        "StopTimeout": 2,
        "HostConfig": host,
    }
