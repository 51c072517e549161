"""A connection guard for the HTTP servers a daemon exposes: strangers cannot starve them.

``ServerLimits`` is the policy; ``serve_app(..., limits=...)`` applies it. The guard wraps the
aiohttp protocol factory of one listening socket and adds, per connection:

* a **header deadline**: a request's headers must arrive within ``header_timeout_s`` of the
  connection opening (or of the previous response, on keep-alive), else the connection is
  aborted (slowloris);
* a **body deadline**: once the headers are in, the whole body must arrive within
  ``body_timeout_s`` (a body trickled a byte at a time is cut);
* a **connection cap** with a **reserve**: at most ``max_connections`` open, of which at most
  ``max_connections - reserve`` may be *pending* (not yet admitted), and at most
  ``max_pending_per_ip`` from one source address (more are refused at once). A new connection
  that would exceed the pending or total bound evicts the oldest pending connection (many
  addresses); only when none is pending is the new one refused. A connection becomes *admitted*
  when the app says so (``admit(request)``: the btauth middleware does, after the identity and
  permit checks on the headers, before it reads the body) or, with ``admit_on_headers``, as
  soon as its headers parse (local health servers);
* **bounded memory**: aiohttp's header limits (``max_line_size``, ``max_field_size`` and
  ``max_headers``: a pending connection's head costs at most about 260 kB of memory, measured;
  aiohttp's own 128 headers would allow about 1 MB) plus a small read buffer; the body is read
  only for admitted callers;
* **broken bodies fail at once**: a framing error inside a body that is being read (a chunk size
  that is not hex) fails that read with the parser's error (btauth answers 400) instead of
  leaving the handler waiting for the body deadline (see ``_fail_broken_body``);
* **rate-limited logging**: refusals, evictions, timeouts and clients that vanish mid-request
  are counted and logged as one summary line per ``log_interval_s`` (no traceback), and asyncio's
  ``socket.accept() out of system resource`` reports are counted instead of logged.

The cap is clamped so that every server in the process fits under ``RLIMIT_NOFILE`` with
``fd_headroom`` descriptors to spare (see ``clamp_to_nofile``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["ConnectionGuard", "ConnectionStats", "ServerLimits", "admit", "clamp_to_nofile"]

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """How much one listening socket lets strangers hold."""

    max_connections: int = 768
    reserve: int = 128
    """Slots pending (not yet admitted) connections may never take."""
    max_pending_per_ip: int = 32
    """Pending connections one source address may hold; more are refused at once (one host
    cannot fill the pending pool; a validator on another address still gets a slot)."""
    header_timeout_s: float = 10.0
    body_timeout_s: float = 20.0
    keepalive_timeout_s: float = 15.0
    admit_on_headers: bool = False
    """Admit every connection whose headers parse (servers without per-caller auth)."""
    read_bufsize: int = 16 * 1024
    max_line_size: int = 4096
    max_field_size: int = 4096
    max_headers: int = 32
    """Header lines per request (more: 400). A btauth/1 call sends about 12, a browser about 20."""
    log_interval_s: float = 60.0
    fd_headroom: int = 128
    """Descriptors left for everything else (chain, files, other servers) when clamping."""

    def __post_init__(self) -> None:
        if self.max_connections < 2 or not 0 <= self.reserve < self.max_connections:
            raise ValueError("need max_connections >= 2 and 0 <= reserve < max_connections")
        if self.max_pending_per_ip < 1:
            raise ValueError("need max_pending_per_ip >= 1")

    @property
    def max_pending(self) -> int:
        return self.max_connections - self.reserve

    def runner_kwargs(self, stats: ConnectionStats) -> dict[str, Any]:
        """Settings for aiohttp's ``AppRunner`` (the request handler)."""
        return {
            "logger": _ServerLogger(stats),
            "keepalive_timeout": self.keepalive_timeout_s,
            "read_bufsize": self.read_bufsize,
            "max_line_size": self.max_line_size,
            "max_field_size": self.max_field_size,
            "max_headers": self.max_headers,
            "lingering_time": 0.0,
        }


def clamp_to_nofile(
    limits: ServerLimits, *, others: int = 0, nofile: int | None = None
) -> ServerLimits:
    """``limits`` with ``max_connections`` (and ``reserve`` in proportion) lowered so that
    ``others + max_connections + fd_headroom`` fits the soft ``RLIMIT_NOFILE`` (or ``nofile``)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if nofile is None else nofile
    if soft == resource.RLIM_INFINITY:
        return limits
    room = soft - limits.fd_headroom - others
    if room >= limits.max_connections:
        return limits
    cap = max(2, room)
    reserve = min(cap - 1, max(1, limits.reserve * cap // limits.max_connections))
    log.warning(
        "server.connections_clamped",
        nofile=soft,
        wanted=limits.max_connections,
        max_connections=cap,
        hint="raise LimitNOFILE= (systemd) or ulimit -n",
    )
    return dataclasses.replace(limits, max_connections=cap, reserve=reserve)


@dataclass(slots=True)
class ConnectionStats:
    accepted: int = 0
    refused: int = 0
    """Over the cap with nothing to evict."""
    evicted: int = 0
    """Oldest pending connection closed to make room."""
    header_timeouts: int = 0
    body_timeouts: int = 0
    client_gone: int = 0
    """Client disconnected in the middle of a request."""
    accept_errors: int = 0
    """``accept()`` failed (out of descriptors / memory)."""
    bad_requests: int = 0
    """Requests aiohttp could not parse (answered 400; aiohttp would log a traceback each)."""

    def as_dict(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


_REPORTED = (
    "refused",
    "evicted",
    "header_timeouts",
    "body_timeouts",
    "client_gone",
    "bad_requests",
)
_AIOHTTP_SERVER_LOG = logging.getLogger("aiohttp.server")


class _ServerLogger(logging.Logger):
    """aiohttp's request-handler logger: a client's unparsable request is counted (it would
    otherwise be an ERROR with a traceback each, a log flood); anything else goes on to
    ``aiohttp.server``."""

    def __init__(self, stats: ConnectionStats) -> None:
        super().__init__("aiohttp.server")
        self._stats = stats

    def _log(self, level: int, msg: object, args: Any, *a: Any, **kw: Any) -> None:
        if level >= logging.WARNING and str(msg).startswith("Error handling request"):
            self._stats.bad_requests += 1
            return
        if _AIOHTTP_SERVER_LOG.isEnabledFor(level):
            _AIOHTTP_SERVER_LOG._log(level, msg, args, *a, **kw)


class _Conn:
    __slots__ = ("admitted", "guard", "ip", "reason", "request", "timer", "transport")

    def __init__(self, guard: ConnectionGuard, transport: asyncio.Transport, ip: str) -> None:
        self.guard = guard
        self.transport = transport
        self.ip = ip
        self.admitted = False
        self.reason: str | None = None
        self.request: web.BaseRequest | None = None
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, delay: float, callback: Callable[[], None]) -> None:
        self.disarm()
        self.timer = asyncio.get_running_loop().call_later(delay, callback)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def kill(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.disarm()
        self.transport.abort()

    def header_deadline(self) -> None:
        self.timer = None
        self.guard.stats.header_timeouts += 1
        self.kill("header_timeout")

    def body_deadline(self) -> None:
        self.timer = None
        request = self.request
        if request is not None and not request.content.is_eof():
            self.guard.stats.body_timeouts += 1
            self.kill("body_timeout")


class _GuardedProtocol(asyncio.Protocol):
    """Sits in front of aiohttp's ``RequestHandler``; refuses or forwards everything."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: Any = None
        self._conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._conn = self._guard._open(transport)
        if self._conn is None:
            transport.abort()
            return
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        self._inner.data_received(data)
        if self._conn is not None and self._conn.request is not None:
            _fail_broken_body(self._inner, self._conn.request)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard._close(self._conn)
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def _fail_broken_body(handler: Any, request: web.BaseRequest) -> None:
    """aiohttp's C parser, on a framing error inside a body (a chunk size that is not hex, a
    chunk without its CRLF), queues a 400 for the *next* message but never tells the payload of
    the request in flight: its handler would wait for the body deadline, then the connection is
    aborted and the 400 never sent. Hand the parse error to that payload so the read fails now.
    (Reads aiohttp's private message queue; should it change, the body deadline still holds.)"""
    content = request.content
    if content.is_eof() or content.exception() is not None:
        return
    for message, _ in getattr(handler, "_messages", ()):
        exc = getattr(message, "exc", None)
        if isinstance(exc, HttpProcessingError):
            content.set_exception(exc)
            return


@dataclass
class ConnectionGuard:
    """The live state of one guarded listening socket."""

    limits: ServerLimits
    name: str = "http"
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    pending: OrderedDict[asyncio.Transport, _Conn] = field(default_factory=OrderedDict)
    admitted: dict[asyncio.Transport, _Conn] = field(default_factory=dict)
    pending_by_ip: dict[str, int] = field(default_factory=dict)

    @property
    def open(self) -> int:
        return len(self.pending) + len(self.admitted)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner)

    def may_open(self, ip: str) -> bool:
        """Whether a connection from ``ip`` would get a slot (checked at ``accept``, before
        asyncio builds a transport for it)."""
        if self.pending_by_ip.get(ip, 0) >= self.limits.max_pending_per_ip:
            return False
        return self.open < self.limits.max_connections or bool(self.pending)

    def _open(self, transport: asyncio.Transport) -> _Conn | None:
        lim = self.limits
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self.pending_by_ip.get(ip, 0) >= lim.max_pending_per_ip:
            self.stats.refused += 1
            return None
        while self.open >= lim.max_connections or len(self.pending) >= lim.max_pending:
            if not self.pending:
                self.stats.refused += 1
                return None
            _, oldest = self.pending.popitem(last=False)
            self._unpend(oldest)
            self.stats.evicted += 1
            oldest.kill("evicted")
        conn = _Conn(self, transport, ip)
        self.pending[transport] = conn
        self.pending_by_ip[ip] = self.pending_by_ip.get(ip, 0) + 1
        self.stats.accepted += 1
        conn.arm(lim.header_timeout_s, conn.header_deadline)
        return conn

    def _unpend(self, conn: _Conn) -> None:
        n = self.pending_by_ip.get(conn.ip, 0) - 1
        if n > 0:
            self.pending_by_ip[conn.ip] = n
        else:
            self.pending_by_ip.pop(conn.ip, None)

    def _close(self, conn: _Conn) -> None:
        conn.disarm()
        if self.pending.pop(conn.transport, None) is not None:
            self._unpend(conn)
        self.admitted.pop(conn.transport, None)

    def _lookup(self, request: web.BaseRequest) -> _Conn | None:
        transport = request.transport
        if transport is None:
            return None
        return self.admitted.get(transport) or self.pending.get(transport)

    def admit(self, request: web.BaseRequest) -> None:
        conn = self._lookup(request)
        if conn is not None and not conn.admitted:
            conn.admitted = True
            if self.pending.pop(conn.transport, None) is not None:
                self._unpend(conn)
            self.admitted[conn.transport] = conn

    def middleware(self) -> Any:
        """Outermost middleware: headers are in (stop the header clock, start the body clock);
        the response is out (start the header clock for a keep-alive request)."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self._lookup(request)
            request[_GUARD] = self
            if conn is None:
                return await handler(request)
            conn.request = request
            conn.arm(self.limits.body_timeout_s, conn.body_deadline)
            if self.limits.admit_on_headers:
                self.admit(request)
            try:
                return await handler(request)
            except ConnectionError:
                if conn.reason is None:
                    self.stats.client_gone += 1
                    conn.reason = "client_gone"
                resp = web.Response(status=400, text="connection lost")
                resp.force_close()
                return resp
            finally:
                conn.request = None
                if conn.reason is None and not conn.transport.is_closing():
                    conn.arm(
                        self.limits.header_timeout_s + self.limits.keepalive_timeout_s,
                        conn.header_deadline,
                    )

        return guard

    def exception_handler(
        self, previous: Any
    ) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
        """A loop exception handler that counts accept() resource errors instead of logging a
        traceback per refused accept; everything else goes to ``previous``."""

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if str(context.get("message", "")).startswith("socket.accept() out of system"):
                self.stats.accept_errors += 1
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        return handle

    async def report(self) -> None:
        """Every ``log_interval_s``: one summary line when anything was refused or cut."""
        last = self.stats.as_dict()
        while True:
            await asyncio.sleep(self.limits.log_interval_s)
            now = self.stats.as_dict()
            delta = {k: now[k] - last[k] for k in now}
            last = now
            if any(delta[k] for k in (*_REPORTED, "accept_errors")):
                log.warning(
                    f"{self.name}.connections_refused",
                    interval_s=self.limits.log_interval_s,
                    open=self.open,
                    pending=len(self.pending),
                    **{k: v for k, v in delta.items() if v},
                )


try:
    _GUARD: Any = web.RequestKey("soundsright.guard", ConnectionGuard)
except AttributeError:  # aiohttp < 3.12
    _GUARD = "soundsright.guard"


def admit(request: web.Request) -> None:
    """Mark the request's connection as admitted (it no longer counts as pending and may use the
    reserve). A no-op on an unguarded server."""
    guard = request.get(_GUARD)
    if isinstance(guard, ConnectionGuard):
        guard.admit(request)
