"""Fit the per-container limits to the engine's host (checked when the runner opens).

Every run slot may hold one container at its full memory limit plus its tmpfs (tmpfs pages
are memory too), so ``slots x (memory + tmpfs)`` must fit in ``MEMORY_SHARE`` of the host's
memory, leaving the rest to the validator, its scoring pool and the engine. A CPU limit at or
above the host's CPU count limits nothing, so ``slots x cpus`` must not exceed it.

Unset values (``memory_mb`` / ``cpus`` not configured) are sized here: memory is the slot's
share minus its tmpfs (at most 16 GiB), CPUs the host's CPUs divided by the slots. Configured
values that do not fit are a ``ConfigError`` (one line, the numbers and what to change): the
daemon refuses to start rather than clamp silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._exceptions import ConfigError

__all__ = ["MEMORY_SHARE", "Fitted", "fit_limits"]

MEMORY_SHARE = 0.8
_MAX_AUTO_MEMORY = 16 * 1024**3
_MIN_MEMORY = 256 * 1024**2
_MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Fitted:
    memory_bytes: int
    cpus: float


def fit_limits(
    *,
    slots: int,
    host_memory: int,
    host_cpus: int,
    memory_bytes: int | None,
    cpus: float | None,
    tmpfs_bytes: int,
) -> Fitted:
    """The memory and CPU limit of one model container on a host with ``host_memory`` bytes
    and ``host_cpus`` CPUs running ``slots`` containers at once."""
    if slots < 1 or host_memory <= 0 or host_cpus < 1:
        raise ValueError("slots, host_memory and host_cpus must be positive")
    budget = int(host_memory * MEMORY_SHARE)
    if memory_bytes is None:
        memory_bytes = min(_MAX_AUTO_MEMORY, budget // slots - tmpfs_bytes)
        if memory_bytes < _MIN_MEMORY:
            raise ConfigError(
                f"the engine host has {host_memory // _MIB} MiB of memory: {slots} run slots "
                f"with {tmpfs_bytes // _MIB} MiB of tmpfs each leave under {_MIN_MEMORY // _MIB}"
                " MiB per model; lower run_slots or tmpfs_mb",
                key="sandbox",
            )
    elif slots * (memory_bytes + tmpfs_bytes) > budget:
        raise ConfigError(
            f"{slots} run slots x (memory_mb {memory_bytes // _MIB} + tmpfs_mb "
            f"{tmpfs_bytes // _MIB}) = {slots * (memory_bytes + tmpfs_bytes) // _MIB} MiB is over "
            f"{MEMORY_SHARE:.0%} of the engine host's {host_memory // _MIB} MiB; lower memory_mb, "
            "tmpfs_mb or run_slots (or leave memory_mb unset to size it from the host)",
            key="sandbox",
        )
    if cpus is None:
        cpus = round(host_cpus / slots, 2)
    elif slots * cpus > host_cpus:
        raise ConfigError(
            f"{slots} run slots x cpus {cpus:g} is more than the engine host's {host_cpus} CPUs "
            "(such a limit limits nothing); lower cpus or run_slots (or leave cpus unset)",
            key="sandbox",
        )
    return Fitted(memory_bytes, cpus)
