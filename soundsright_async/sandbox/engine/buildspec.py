"""Pure construction of the throwaway builder container (docs/sandbox.md, "Builds").

A model's ``Dockerfile`` is never built by the engine itself (Podman 4.3 runs ``RUN`` steps
with the host's network, as root with capabilities, and CVE-2024-1753 exposes the host's ``/``).
It is built by ``buildah`` inside a builder container that has: its own user namespace (root
inside is an unprivileged host uid range), no network (or, with ``build_network = "egress"``,
its own bridge behind the host firewall pair), memory/CPU/pids limits, a size-limited tmpfs as
its whole image storage, and only two read-only bind mounts: the build context as one tar file
and the base images as archives. What a ``RUN`` step can reach is the builder's own throwaway
filesystem. Killing the container ends every process of the build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BUILDER_IMAGE",
    "BUILD_SCRIPT",
    "STORE",
    "BuildLimits",
    "build_command",
    "builder_compat_config",
    "builder_libpod_spec",
]

BUILDER_IMAGE = "localhost/soundsright-builder:latest"
STORE = "/var/lib/containers"
"""The builder's image storage and work area: a size-limited tmpfs (the build's disk bound)."""
IN_DIR = "/in"
IMAGES_DIR = "/images"

BUILD_SCRIPT = r"""
set -eu
S=/var/lib/containers
mkdir -p "$S/ctx" "$S/out"
tar -xf /in/context.tar -C "$S/ctx" --no-same-owner --no-same-permissions
tag="$1"; shift
while [ "$1" != "--" ]; do
    id="$(buildah pull -q "docker-archive:/images/$1")"
    buildah tag "$id" "$2"
    shift 2
done
shift
echo "== building $tag"
buildah bud --pull-never --isolation chroot --layers=false --format docker \
    -f Dockerfile -t "$tag" "$@" "$S/ctx"
rm -rf "$S/ctx"
buildah push -q "$tag" "docker-archive:$S/out/img.tar:$tag"
echo "== exported $tag"
"""
"""Run with ``sh -c BUILD_SCRIPT sh TAG [ARCHIVE NAME]... -- [--label K=V]...``."""


@dataclass(frozen=True, slots=True)
class BuildLimits:
    """Resource limits of one build (the builder container)."""

    memory_bytes: int = 4 * 1024**3
    """For the build's processes; the container limit is this plus ``disk_bytes`` (the tmpfs
    storage is memory the kernel charges to the container)."""
    disk_bytes: int = 8 * 1024**3
    cpus: float = 2.0
    pids: int = 1024
    uid_base: int = 1_000_000_000
    """First host uid of the builders' user namespaces (each build gets 65536 from here)."""

    def __post_init__(self) -> None:
        if self.memory_bytes < 64 * 1024**2 or self.disk_bytes < 64 * 1024**2:
            raise ValueError("build memory and disk must be at least 64 MiB")
        if not 0 < self.cpus <= 1024 or self.pids < 32:
            raise ValueError("build cpus must be in (0, 1024] and pids >= 32")
        if not 65536 <= self.uid_base <= 2**32 - 2**26:
            raise ValueError("build uid_base must leave room for the builders' uid ranges")


def build_command(tag: str, bases: Mapping[str, str], labels: Mapping[str, str]) -> list[str]:
    """The exec command: ``bases`` maps an archive file name (in ``/images``) to the image
    name the Dockerfile uses."""
    argv = ["sh", "-c", BUILD_SCRIPT, "sh", tag]
    for archive, name in sorted(bases.items()):
        argv += [archive, name]
    argv.append("--")
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    return argv


def _mounts(in_dir: str, images_dir: str) -> list[tuple[str, str]]:
    return [(in_dir, IN_DIR), (images_dir, IMAGES_DIR)]


def builder_libpod_spec(
    *,
    name: str,
    image: str,
    labels: Mapping[str, str],
    limits: BuildLimits,
    in_dir: str,
    images_dir: str,
    uid_offset: int,
    network: str | None,
    dns: Sequence[str] = (),
) -> dict[str, Any]:
    """The Podman ``POST /libpod/containers/create`` body (Podman: its own user namespace)."""
    host_uid = limits.uid_base + uid_offset * 65536
    idmap = [{"container_id": 0, "host_id": host_uid, "size": 65536}]
    ro = ["ro", "nosuid", "nodev", "noexec", "rbind"]
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": ["sleep", "infinity"],
        "labels": dict(labels),
        "userns": {"nsmode": "private"},
        "idmappings": {"UIDMap": idmap, "GIDMap": idmap},
        # buildah needs CAP_SYS_ADMIN to mount (in its user namespace only); RUN steps get
        # buildah's default set without it
        "cap_add": ["SYS_ADMIN"],
        "no_new_privileges": True,
        "privileged": False,
        "mounts": [
            {
                "destination": STORE,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [f"size={limits.disk_bytes}", "mode=0700", "nodev"],
            },
            *(
                {"destination": dst, "type": "bind", "source": src, "options": ro}
                for src, dst in _mounts(in_dir, images_dir)
            ),
        ],
        "resource_limits": {
            "memory": {
                "limit": limits.memory_bytes + limits.disk_bytes,
                "swap": limits.memory_bytes + limits.disk_bytes,
            },
            "pids": {"limit": limits.pids},
            "cpu": {"quota": int(limits.cpus * 100_000), "period": 100_000},
        },
        "env": {"STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot", "HOME": "/root"},
        "log_configuration": {"driver": "k8s-file", "size": 1024**2},
        "stop_timeout": 1,
    }
    if network is None:
        spec["netns"] = {"nsmode": "none"}
    else:
        spec["netns"] = {"nsmode": "bridge"}
        spec["Networks"] = {network: {}}
        if dns:
            spec["dns_server"] = list(dns)
    return spec


def builder_compat_config(
    *,
    image: str,
    labels: Mapping[str, str],
    limits: BuildLimits,
    in_dir: str,
    images_dir: str,
    network: str | None,
    dns: Sequence[str] = (),
) -> dict[str, Any]:
    """The Docker ``POST /containers/create`` body (Docker: a user namespace only when the
    daemon runs with ``userns-remap``; docs/sandbox.md)."""
    return {
        "Image": image,
        "Cmd": ["sleep", "infinity"],
        "Labels": dict(labels),
        "Env": ["STORAGE_DRIVER=vfs", "BUILDAH_ISOLATION=chroot", "HOME=/root"],
        "NetworkDisabled": network is None,
        "StopTimeout": 1,
        "HostConfig": {
            "NetworkMode": network or "none",
            "Dns": list(dns),
            "CapAdd": ["SYS_ADMIN"],
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            "Memory": limits.memory_bytes + limits.disk_bytes,
            "MemorySwap": limits.memory_bytes + limits.disk_bytes,
            "NanoCpus": int(limits.cpus * 1e9),
            "PidsLimit": limits.pids,
            "Tmpfs": {STORE: f"rw,nodev,size={limits.disk_bytes},mode=0700"},
            "Binds": [f"{src}:{dst}:ro" for src, dst in _mounts(in_dir, images_dir)],
            "PortBindings": {},
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
        },
    }
