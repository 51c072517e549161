"""The host firewall rule pair that stops model containers reaching host services
(design.md §5): for the project's bridges (``-i PREFIX+``), accept replies to connections the
host opened, drop everything else addressed to the host. Host→container traffic keeps working.

Only these rules are ever inserted or deleted; nothing is flushed and no policy is changed.
``install`` is idempotent (``-C`` before ``-I``), ``remove`` deletes exactly the rules that
``install`` inserted in this process. IPv6 gets the same pair when ``ip6tables`` exists.
"""

from __future__ import annotations

import asyncio
import re
import shutil

import structlog

from .errors import EngineError

__all__ = ["BridgeFirewall", "rule_pair"]

log = structlog.get_logger(__name__)


def rule_pair(prefix: str) -> tuple[list[str], list[str]]:
    """The two rule specifications (without the ``-I``/``-D`` verb and chain)."""
    if not re.fullmatch(r"[a-z0-9]{2,10}", prefix):
        raise ValueError(f"bridge prefix {prefix!r} must be 2-10 lower-case letters or digits")
    iface = ["-i", f"{prefix}+"]
    accept = [*iface, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    drop = [*iface, "-j", "DROP"]
    return accept, drop


class BridgeFirewall:
    """Installs and removes the rule pair for ``prefix`` with iptables (and ip6tables)."""

    def __init__(self, prefix: str, *, timeout_s: float = 20.0) -> None:
        self.prefix = prefix
        self._accept, self._drop = rule_pair(prefix)
        self._timeout_s = timeout_s
        self._installed: list[tuple[str, list[str]]] = []

    @property
    def installed(self) -> bool:
        return bool(self._installed)

    async def _run(self, *argv: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                _, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise EngineError(f"{' '.join(argv)} did not finish in {self._timeout_s} s") from None
        if proc.returncode not in (0, 1):
            raise EngineError(f"{' '.join(argv)} failed: {err.decode(errors='replace').strip()}")
        return proc.returncode or 0

    async def install(self) -> None:
        tools = [t for t in ("iptables", "ip6tables") if shutil.which(t)]
        if "iptables" not in tools:
            raise EngineError(
                "iptables is not installed; it is needed to keep model containers away from "
                'host services (install it, or set sandbox.firewall = "off" if the engine runs '
                "on another host)"
            )
        for tool in tools:
            # insert DROP first, then ACCEPT above it: the pair ends up ACCEPT (1), DROP (2)
            for spec in (self._drop, self._accept):
                if await self._run(tool, "-w", "-C", "INPUT", *spec) == 0:
                    continue  # already there (another process, or a crash): do not duplicate
                if await self._run(tool, "-w", "-I", "INPUT", "1", *spec) != 0:
                    raise EngineError(f"{tool} refused to insert {' '.join(spec)}")
                self._installed.append((tool, spec))
        log.info("sandbox.firewall.installed", prefix=self.prefix, rules=len(self._installed))

    async def remove(self) -> None:
        while self._installed:
            tool, spec = self._installed.pop()
            await self._run(tool, "-w", "-D", "INPUT", *spec)
        log.info("sandbox.firewall.removed", prefix=self.prefix)
