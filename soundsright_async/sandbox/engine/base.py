"""The container-engine seam. Adapter: ``docker.DockerEngine`` (Docker Engine API through
aiodocker; Podman serves the same API); test double: ``fake.FakeEngine``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from .spec import GpuRequest

__all__ = [
    "BuildRequest",
    "BuiltImage",
    "ContainerEngine",
    "ContainerState",
    "RunRequest",
    "RunningModel",
    "SweepReport",
]


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """Build ``context``'s root ``Dockerfile`` (the whole directory is the context)."""

    context: Path
    tag: str
    labels: dict[str, str]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class BuiltImage:
    image_id: str
    tag: str
    log: str
    """Build output, truncated to the engine's ``build_log_bytes``."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    image: str
    labels: dict[str, str]
    gpu: GpuRequest | None = None


@dataclass(frozen=True, slots=True)
class RunningModel:
    """A started model container on its own internal network, reachable at ``base_url``."""

    container_id: str
    network_id: str
    ip: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ContainerState:
    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""

    def describe(self) -> str:
        if self.running:
            return "container is running"
        how = "killed by the memory limit (OOM)" if self.oom_killed else "exited"
        code = f" with code {self.exit_code}" if self.exit_code is not None else ""
        err = f": {self.error}" if self.error else ""
        return f"container {how}{code}{err}"


@dataclass(slots=True)
class SweepReport:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.containers) + len(self.networks) + len(self.images)


@runtime_checkable
class ContainerEngine(Protocol):
    """Builds and runs model containers locked down; removes only what it created.

    ``open()`` sweeps what an earlier run of the same ``owner`` left (after a crash) and installs
    the host firewall rules; ``aclose()`` removes the rules and closes the connection.
    ``build`` raises ``BuildFailed``; ``start`` raises ``StartFailed`` (and leaves nothing
    behind); any other ``EngineError`` means the engine itself failed.
    """

    @property
    def name(self) -> str: ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def build(self, request: BuildRequest) -> BuiltImage: ...

    async def start(self, request: RunRequest) -> RunningModel: ...

    async def state(self, model: RunningModel) -> ContainerState: ...

    async def logs(self, model: RunningModel) -> str: ...

    async def stop(self, model: RunningModel) -> None:
        """Remove the container and its network (idempotent, never raises for "not found")."""
        ...

    async def remove_image(self, image: str) -> None: ...

    async def sweep(self) -> SweepReport:
        """Remove every container, network and image labelled with this engine's owner."""
        ...

    async def ping(self) -> None:
        """Raise ``EngineError`` unless the engine answers (the caller owns the deadline); an
        engine that answers again also removes what it failed to remove while it was away."""
        ...
