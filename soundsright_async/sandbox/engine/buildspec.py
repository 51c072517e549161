"""Pure construction of the throwaway builder container (docs/sandbox.md, "Builds").

A model's ``Dockerfile`` is never built by the engine itself (Podman 4.3 runs ``RUN`` steps
with the host's network, as root with capabilities, and CVE-2024-1753 exposes the host's ``/``).
It is built by ``buildah`` inside a builder container that has: its own user namespace (root
inside is an unprivileged host uid range), no network (or, with ``build_network = "egress"``,
its own bridge behind the host firewall pair), memory/CPU/pids limits, a read-only root
filesystem (which holds the base image as a read-only overlay image store), a size-limited tmpfs
as its whole writable image storage, and only two read-only bind mounts: the build context as
one tar file and the base images as archives (the fallback where the store cannot be used).
What a ``RUN`` step can reach is the builder's own throwaway filesystem. Killing the container
ends every process of the build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BUILDER_IMAGE",
    "BUILD_SCRIPT",
    "LABEL_BASES",
    "SHARED",
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
SCRATCH = ("/run", "/tmp", "/var/tmp")
"""Small tmpfs over the builder's read-only root filesystem (buildah's run root, locks)."""
SCRATCH_BYTES = 64 * 1024**2

SHARED = "/var/lib/shared"
"""In the builder image (``make base-image``): the base image pre-extracted as a read-only
overlay image store, so ``FROM`` needs no import (labels ``soundsright.builder.bases``)."""
LABEL_BASES = "soundsright.builder.bases"

BUILD_SCRIPT = r"""
set -eu
S=/var/lib/containers
export TMPDIR="$S/tmp"
mkdir -p "$S/ctx" "$S/out" "$TMPDIR"
tar -xf /in/context.tar -C "$S/ctx" --no-same-owner --no-same-permissions
# overlay in this user namespace, over the read-only store, needs user xattrs on the tmpfs
# (Linux >= 6.6); else vfs, with the base images imported from their archives
v="$(uname -r)"; major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%[!0-9]*}"
if [ -d /var/lib/shared/overlay ] && { [ "$major" -gt 6 ] || \
        { [ "$major" -eq 6 ] && [ "${minor:-0}" -ge 6 ]; }; }; then
    B="buildah --storage-driver overlay --storage-opt overlay.imagestore=/var/lib/shared"
    fast=1
else
    B="buildah --storage-driver vfs"
    fast=0
fi
tag="$1"; shift
ids=""
while [ "$1" != "--" ]; do
    archive="${1%%=*}"
    case "$1" in *=*) id="${1#*=}" ;; *) id="" ;; esac
    if [ "$fast" = 0 ] || [ -z "$id" ]; then
        id="$($B pull -q "docker-archive:/images/$archive")"
    fi
    $B tag "$id" "$2"
    ids="$ids $id"
    shift 2
done
shift
echo "== building $tag"
$B bud --pull-never --isolation chroot --layers=false --format docker \
    -f Dockerfile -t "$tag" "$@" "$S/ctx"
rm -rf "$S/ctx"
# The base images' layers are on the engine already: they are written out as empty
# placeholders (never read), so only the build's own layers are copied.
O="$S/out/oci"
mkdir -p "$O/blobs/sha256"
for id in $ids; do
    for d in $($B inspect --type image \
            --format '{{range .OCIv1.RootFS.DiffIDs}}{{.}} {{end}}' "$id"); do
        : >"$O/blobs/sha256/${d#sha256:}"
    done
done
$B push -q --compression-format zstd --compression-level 1 "$tag" "oci:$O:$tag"
echo "== exported $tag"
"""
"""Run with ``sh -c BUILD_SCRIPT sh TAG [SOURCE NAME]... -- [--label K=V]...``: a SOURCE is a
docker-archive in ``/images`` (``FILE.tar``), with ``=ID`` when the builder's own store holds
that image (then the archive is only imported where overlay cannot be used)."""


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
    """The exec command: ``bases`` maps a source (an archive file name in ``/images``, with
    ``=ID`` if the builder's store has the image) to the image name the Dockerfile uses."""
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
        # nothing a build does reaches the host's disk, nor changes the image store it reads
        "read_only_filesystem": True,
        "mounts": [
            {
                "destination": STORE,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [f"size={limits.disk_bytes}", "mode=0700", "nodev"],
            },
            *(
                {
                    "destination": path,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": [f"size={SCRATCH_BYTES}", "mode=1777", "nodev", "nosuid"],
                }
                for path in SCRATCH
            ),
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
            "ReadonlyRootfs": True,
            "Tmpfs": {
                STORE: f"rw,nodev,size={limits.disk_bytes},mode=0700",
                **{p: f"rw,nodev,nosuid,size={SCRATCH_BYTES},mode=1777" for p in SCRATCH},
            },
            "Binds": [f"{src}:{dst}:ro" for src, dst in _mounts(in_dir, images_dir)],
            "PortBindings": {},
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
        },
    }
