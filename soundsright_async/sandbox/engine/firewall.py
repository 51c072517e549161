"""The host firewall rule pair that stops model containers reaching host services
(design.md §5): for the project's bridges (``-i PREFIX+``), accept replies to connections the
host opened, drop everything else addressed to the host. Host→container traffic keeps working.

Only these rules are ever inserted or deleted; nothing is flushed and no policy is changed.
IPv6 gets the same pair when ``ip6tables`` exists.

Several processes share one rule pair (a validator and a ``model verify``, two engines of one
daemon): each ``install`` registers a *holder* (a file ``PID-STARTTIME-TOKEN`` under
``state_dir/PREFIX.holders``) and inserts the rules if they are missing; ``remove`` drops its
holder and deletes the rules only when no live holder remains. Holders of dead processes (a
crash, a SIGKILL) are pruned on every install and remove. All of it runs under an exclusive
``flock`` on ``state_dir/PREFIX.lock``, so an install and a remove never interleave.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import structlog

from .errors import EngineError

__all__ = ["DEFAULT_STATE_DIR", "BridgeFirewall", "process_start_time", "rule_pair"]

log = structlog.get_logger(__name__)
DEFAULT_STATE_DIR = Path("/run/soundsright-firewall")


def rule_pair(prefix: str) -> tuple[list[str], list[str]]:
    """The two rule specifications (without the ``-I``/``-D`` verb and chain)."""
    if not re.fullmatch(r"[a-z0-9]{2,10}", prefix):
        raise ValueError(f"bridge prefix {prefix!r} must be 2-10 lower-case letters or digits")
    iface = ["-i", f"{prefix}+"]
    accept = [*iface, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    drop = [*iface, "-j", "DROP"]
    return accept, drop


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class BridgeFirewall:
    """Holds the rule pair for ``prefix`` with iptables (and ip6tables) while installed."""

    def __init__(
        self, prefix: str, *, state_dir: Path = DEFAULT_STATE_DIR, timeout_s: float = 20.0
    ) -> None:
        self.prefix = prefix
        self._accept, self._drop = rule_pair(prefix)
        self._timeout_s = timeout_s
        self._state = state_dir
        self._holders = state_dir / f"{prefix}.holders"
        self._holder: Path | None = None

    @property
    def installed(self) -> bool:
        return self._holder is not None

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

    def _tools(self) -> list[str]:
        tools = [t for t in ("iptables", "ip6tables") if shutil.which(t)]
        if "iptables" not in tools:
            raise EngineError(
                "iptables is not installed; it is needed to keep model containers away from "
                'host services (install it, or set sandbox.firewall = "off" if the engine runs '
                "on another host)"
            )
        if os.geteuid() != 0:
            raise EngineError(
                "the host firewall (iptables) needs root: run as root, or set "
                'sandbox.firewall = "off" (see docs/sandbox.md: then nothing stops a model '
                "container reaching services on this host)"
            )
        return tools

    async def _locked(self) -> int:
        """An exclusive flock on the state directory's lock file (deadline ``timeout_s``)."""
        fd = await asyncio.to_thread(_open_lock, self._state, self.prefix)
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise EngineError(
                        f"the firewall lock {self._state} was held for over {self._timeout_s} s"
                    ) from None
                await asyncio.sleep(0.05)

    def _live_holders(self) -> list[Path]:
        """Holder files of live processes; the dead ones are removed."""
        live = []
        for entry in sorted(self._holders.iterdir()):
            pid, _, rest = entry.name.partition("-")
            started = rest.partition("-")[0]
            if pid.isdigit() and process_start_time(int(pid)) == started:
                live.append(entry)
            else:
                entry.unlink(missing_ok=True)
                log.info("sandbox.firewall.pruned_holder", holder=entry.name)
        return live

    async def install(self) -> None:
        tools = self._tools()
        if self._holder is not None:
            return
        fd = await self._locked()
        try:
            await asyncio.to_thread(self._holders.mkdir, mode=0o700, exist_ok=True)
            await asyncio.to_thread(self._live_holders)
            pid = os.getpid()
            holder = self._holders / f"{pid}-{process_start_time(pid)}-{secrets.token_hex(4)}"
            await asyncio.to_thread(holder.touch, 0o600)
            try:
                inserted = 0
                for tool in tools:
                    # insert DROP first, then ACCEPT above it: ACCEPT (1), DROP (2)
                    for spec in (self._drop, self._accept):
                        if await self._run(tool, "-w", "-C", "INPUT", *spec) == 0:
                            continue  # already there (another holder): do not duplicate
                        if await self._run(tool, "-w", "-I", "INPUT", "1", *spec) != 0:
                            raise EngineError(f"{tool} refused to insert {' '.join(spec)}")
                        inserted += 1
            except BaseException:
                await asyncio.to_thread(holder.unlink, True)
                raise
            self._holder = holder
        finally:
            os.close(fd)  # releases the flock
        log.info("sandbox.firewall.installed", prefix=self.prefix, inserted=inserted)

    async def remove(self) -> None:
        """Drop this holder; delete the rule pair only if no live holder remains."""
        if self._holder is None:
            return
        fd = await self._locked()
        try:
            await asyncio.to_thread(self._holder.unlink, True)
            self._holder = None
            others = await asyncio.to_thread(self._live_holders)
            if others:
                log.info("sandbox.firewall.kept", prefix=self.prefix, holders=len(others))
                return
            for tool in self._tools():
                for spec in (self._accept, self._drop):
                    for _ in range(8):  # a crashed old version may have left duplicates
                        if await self._run(tool, "-w", "-D", "INPUT", *spec) != 0:
                            break
        finally:
            os.close(fd)
        log.info("sandbox.firewall.removed", prefix=self.prefix)

    def holders(self) -> int:
        """How many live processes hold the rules (blocking; for tests and diagnostics)."""
        if not self._holders.is_dir():
            return 0
        return len(self._live_holders())


def _open_lock(state: Path, prefix: str) -> int:
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(state / f"{prefix}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
