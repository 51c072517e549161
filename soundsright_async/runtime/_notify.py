"""systemd's sd_notify datagram protocol, written out (no libsystemd needed).

A service started with ``Type=notify`` gets ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace). Each notification is one datagram of ``KEY=VALUE`` lines: ``READY=1`` once
the service serves, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds (when
``WatchdogSec=`` is set and ``$WATCHDOG_PID`` is unset or ours), ``STATUS=...`` for
``systemctl status`` and ``STOPPING=1`` on shutdown. Without ``$NOTIFY_SOCKET`` every call is a
no-op. Sending never blocks and never raises: a lost notification is logged, not fatal.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import anyio
import structlog

__all__ = ["SdNotifier", "ping_watchdog"]

log = structlog.get_logger(__name__)


class SdNotifier:
    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, pid: int | None = None) -> SdNotifier:
        """From ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        owner = env.get("WATCHDOG_PID", "")
        mine = not owner or (owner.isdigit() and int(owner) == (pid or os.getpid()))
        if raw.isdigit() and mine:
            usec = int(raw)
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog timeout, or None when there is no watchdog."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2e6

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()
        return self.address

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram ``KEY=VALUE\\n...`` (keys upper-cased); True if it was sent."""
        if self.address is None:
            return False
        payload = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._target())
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify.failed", socket=self.address, error=str(exc))
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(ready=1, status=status)

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(stopping=1, status=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def ping_watchdog(notifier: SdNotifier, interval_s: float) -> None:
    """Ping systemd's watchdog from the event loop every ``interval_s`` (a stalled loop misses
    its pings, so systemd restarts a daemon whose loop is stuck, not only a dead one)."""
    while True:
        notifier.watchdog()
        await anyio.sleep(interval_s)
