"""A whole competition on one machine: a localnet, a git hub of example models, one validator and
several miners as real processes (``soundsright demo``, ``make demo``, the end-to-end tests)."""

from __future__ import annotations

from ._network import LocalNetwork, MinerSpec, free_port, git_commit_dir
from ._procs import Daemon
from ._weights import DemoError, deepfilternet_weights

__all__ = [
    "Daemon",
    "DemoError",
    "LocalNetwork",
    "MinerSpec",
    "deepfilternet_weights",
    "free_port",
    "git_commit_dir",
]
