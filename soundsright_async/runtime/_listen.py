"""A listening socket whose accept loop refuses over-limit connections before asyncio builds a
transport for them (a refusal costs an ``accept`` and a ``close``, not a transport, a protocol and
a task), and that counts ``accept()`` failures (out of descriptors) instead of logging each."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable

from ._guard import ConnectionGuard

__all__ = ["GuardedListener"]

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with a reset, no TIME_WAIT
ACCEPT_BATCH = 128
ACCEPT_RETRY_S = 1.0


class GuardedListener(asyncio.AbstractServer):
    def __init__(
        self,
        sock: socket.socket,
        guard: ConnectionGuard,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._guard = guard
        self._factory = factory
        self._tasks: set[asyncio.Task[object]] = set()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    @classmethod
    def bind(
        cls,
        host: str,
        port: int,
        guard: ConnectionGuard,
        factory: Callable[[], asyncio.Protocol],
        *,
        backlog: int,
    ) -> GuardedListener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=backlog)
        return cls(sock, guard, factory)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self._sock,)

    def _accept(self) -> None:
        guard = self._guard
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                guard.stats.accept_errors += 1
                if exc.errno in _OUT_OF_RESOURCES:  # let some connections close first
                    self._loop.remove_reader(self._sock.fileno())
                    self._loop.call_later(ACCEPT_RETRY_S, self._resume)
                return
            if not guard.may_open(str(addr[0])):
                guard.stats.refused += 1
                try:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                finally:
                    conn.close()
                continue
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(self._start(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:
            conn.close()
            self._guard.stats.client_gone += 1

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        return None
