"""The container engine: build a model's image and run it locked down (design.md §5).

``ContainerEngine`` (``base``) is the seam; ``DockerEngine`` the adapter (Docker Engine API via
aiodocker, served by Docker or Podman); ``FakeEngine`` the in-memory double. ``spec`` builds the
exact network and container configuration; ``BridgeFirewall`` the host rule pair.
"""

from __future__ import annotations

from .base import (
    BuildRequest,
    BuiltImage,
    ContainerEngine,
    ContainerState,
    RunningModel,
    RunRequest,
    SweepReport,
)
from .buildspec import BUILDER_IMAGE, BuildLimits
from .docker import DockerEngine, TlsFiles
from .errors import BuildFailed, EngineError, StartFailed
from .fake import FakeEngine
from .firewall import BridgeFirewall, rule_pair
from .locate import default_engine_url
from .spec import (
    BASE_IMAGE,
    LABEL_ENGINE,
    LABEL_MANAGED,
    LABEL_OWNER,
    MODEL_PORT,
    MODEL_USER,
    GpuRequest,
    SandboxLimits,
    container_config,
    image_tag,
    network_config,
    project_labels,
    tmpfs_paths,
)

__all__ = [
    "BASE_IMAGE",
    "BUILDER_IMAGE",
    "LABEL_ENGINE",
    "LABEL_MANAGED",
    "LABEL_OWNER",
    "MODEL_PORT",
    "MODEL_USER",
    "BridgeFirewall",
    "BuildFailed",
    "BuildLimits",
    "BuildRequest",
    "BuiltImage",
    "ContainerEngine",
    "ContainerState",
    "DockerEngine",
    "EngineError",
    "FakeEngine",
    "GpuRequest",
    "RunRequest",
    "RunningModel",
    "SandboxLimits",
    "StartFailed",
    "SweepReport",
    "TlsFiles",
    "container_config",
    "default_engine_url",
    "image_tag",
    "network_config",
    "project_labels",
    "rule_pair",
    "tmpfs_paths",
]
