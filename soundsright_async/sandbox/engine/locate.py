"""Where the engine's socket is: config, else ``DOCKER_HOST``, else the standard paths."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .errors import EngineError

__all__ = ["STANDARD_SOCKETS", "default_engine_url"]

STANDARD_SOCKETS: tuple[str, ...] = (
    "/run/podman/podman.sock",
    "/var/run/docker.sock",
)


def default_engine_url(
    configured: str | None,
    env: Mapping[str, str],
    *,
    candidates: Sequence[str] | None = None,
) -> str:
    """``configured``, else ``$DOCKER_HOST``, else the first existing standard socket
    (``$XDG_RUNTIME_DIR/podman/podman.sock`` is tried before the system ones)."""
    if configured:
        return configured
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"]
    paths = list(candidates) if candidates is not None else list(STANDARD_SOCKETS)
    if candidates is None and env.get("XDG_RUNTIME_DIR"):
        paths.insert(0, f"{env['XDG_RUNTIME_DIR']}/podman/podman.sock")
    for path in paths:
        if os.path.exists(path):
            return f"unix://{path}"
    raise EngineError(
        "no container engine found: set sandbox.engines[].url in the config or DOCKER_HOST "
        "(e.g. run `make podman`), or start Podman/Docker on its standard socket "
        f"({', '.join(paths)})"
    )
