"""Errors of the container engine::

    SoundsrightError
    └── EngineError            the engine (Docker/Podman API) or the host firewall failed us
        ├── BuildFailed        the model's image did not build (its Dockerfile, or the deadline)
        └── StartFailed        the model's container could not be created or started

``BuildFailed`` and ``StartFailed`` are the model's fault and end its benchmark with a reason;
a plain ``EngineError`` is ours (socket gone, iptables missing) and is raised to the caller.
"""

from __future__ import annotations

from ..._exceptions import SoundsrightError

__all__ = ["UNREACHABLE", "BuildFailed", "EngineError", "StartFailed"]

UNREACHABLE = 900
"""aiodocker's status for "cannot connect to the engine" (the socket is gone): the engine's
fault, never the model's."""


class EngineError(SoundsrightError):
    """The container engine or the host firewall failed."""


class BuildFailed(EngineError):
    """The image did not build. ``reason``: ``build_failed`` or ``build_timeout``; ``log`` is
    the build output (truncated to the configured size)."""

    def __init__(self, reason: str, detail: str, *, log: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.log = log
        super().__init__(f"{reason}: {detail}")


class StartFailed(EngineError):
    """The container could not be created or started (bad image config, engine refusal)."""

    def __init__(self, detail: str) -> None:
        self.reason = "start_failed"
        self.detail = detail
        super().__init__(f"start_failed: {detail}")
