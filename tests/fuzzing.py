"""Shared by the fuzz tests (``tests/test_fuzz_*.py``): hypothesis settings, a driver that feeds
hypothesis examples to coroutines on the test's own event loop, raw HTTP over asyncio streams, and
a resident-memory probe.

Why a driver: the servers under test run on the test's event loop (started inside the test, so
no fixture outlives an example). Hypothesis calls its test function synchronously, so it runs in a
worker thread and hands every example to the loop with ``run_coroutine_threadsafe``; an example
that does not finish within its limit fails (a hang is a bug) and is cancelled.

``SOUNDSRIGHT_FUZZ_EXAMPLES=n`` sets every fuzz test's ``max_examples`` to ``n`` (default: each
test's own modest number); ``SOUNDSRIGHT_FUZZ_RANDOM=1`` draws fresh examples on every run instead
of the fixed, derandomized sequence CI runs (hypothesis prints the seed of a failure).
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T = TypeVar("T")

EXAMPLES_ENV = "SOUNDSRIGHT_FUZZ_EXAMPLES"
RANDOM_ENV = "SOUNDSRIGHT_FUZZ_RANDOM"


def examples(default: int) -> int:
    value = os.environ.get(EXAMPLES_ENV, "").strip()
    return int(value) if value else default


def fuzz_settings(default_examples: int) -> settings:
    return settings(
        max_examples=examples(default_examples),
        deadline=None,
        derandomize=not os.environ.get(RANDOM_ENV),
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


async def fuzz(
    strategy: st.SearchStrategy[T],
    case: Callable[[T], Coroutine[Any, Any, None]],
    *,
    max_examples: int,
    limit_s: float,
) -> int:
    """Run ``case(example)`` on the running loop for each example hypothesis draws from
    ``strategy`` (failures shrink as usual). Returns how many examples ran."""
    loop = asyncio.get_running_loop()
    ran = [0]

    @fuzz_settings(max_examples)
    @given(strategy)
    def run(example: T) -> None:
        ran[0] += 1
        future = asyncio.run_coroutine_threadsafe(case(example), loop)
        try:
            future.result(timeout=limit_s)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"no outcome within {limit_s} s for {example!r}"[:2000]) from None

    await asyncio.to_thread(run)
    return ran[0]


@dataclass
class Answer:
    """What a server sent back on one connection: the first response (if any) and whether the
    connection was closed by the server afterwards."""

    status: int | None
    head: bytes = b""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:200]!r}, closed={self.closed})"


async def exchange(
    port: int,
    chunks: list[bytes],
    *,
    half_close: bool = False,
    pause_s: float = 0.0,
    limit_s: float = 5.0,
) -> Answer:
    """Send ``chunks`` (``pause_s`` apart) on a fresh loopback connection, optionally half-close,
    and read one HTTP response. ``Answer(None, closed=True)`` when the server closed (or reset)
    the connection without answering; ``TimeoutError`` when nothing happens within ``limit_s``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(limit_s):
            try:
                for i, chunk in enumerate(chunks):
                    if i and pause_s:
                        await asyncio.sleep(pause_s)
                    writer.write(chunk)
                    await writer.drain()
                if half_close and writer.can_write_eof():
                    writer.write_eof()
            except ConnectionError:
                pass  # the server answered (or closed) before taking everything: read on
            return await read_response(reader)
    finally:
        writer.transport.abort()


async def read_response(reader: asyncio.StreamReader) -> Answer:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return Answer(None, closed=True)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    try:
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        body = exc.partial if isinstance(exc, asyncio.IncompleteReadError) else b""
    closed = headers.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0")
    return Answer(status, head, body, headers, closed)


# -- malformed HTTP/1.1 requests that a guarded aiohttp server answers with 400 (its parser refuses
# them; the guard's ``ServerLimits``: lines and fields up to 4096 bytes, at most 32 headers)

MAX_HEADERS = 32

TOKEN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)
NOT_TCHAR = st.sampled_from([*'@()<>,;:\\"[]?={}/', "\x00", "\x01", "\x7f", "\x1b"])
BAD_FIRST_BYTE = st.sampled_from(
    [bytes([b]) for b in [*range(0, 9), 11, 12, *range(14, 32), 127, 128, 200, 255]]
    + [b"@", b"(", b"<", b"{", b"/", b"?"]
)
SAFE_PATH = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_~", min_size=1, max_size=12), max_size=4
).map(lambda parts: "/" + "/".join(parts))
"""Paths no client rewrites (no dots, no empty segments), so the signed path is the one sent."""


@st.composite
def broken_request_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["method", "version", "bare_lf", "first_byte"]))
    if kind == "method":
        method = draw(TOKEN) + draw(NOT_TCHAR) + draw(st.text(alphabet="ABC@(", max_size=4))
        return f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1")
    if kind == "version":
        version = draw(
            st.one_of(
                st.tuples(st.integers(3, 99), st.integers(0, 9)).map(
                    lambda v: f"HTTP/{v[0]}.{v[1]}"
                ),
                st.text(alphabet="XYZhtp/.", min_size=1, max_size=10).filter(
                    lambda v: not v.startswith("HTTP/")
                ),
            )
        )
        return f"GET {draw(SAFE_PATH)} {version}\r\nHost: x\r\n\r\n".encode()
    if kind == "bare_lf":
        return f"GET {draw(SAFE_PATH)} HTTP/1.1\nHost: x\n\n".encode()
    junk = draw(st.binary(max_size=200))
    return draw(BAD_FIRST_BYTE) + junk + b"\r\n\r\n"


@st.composite
def oversized_head(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["target", "value", "name", "count"]))
    if kind == "target":
        n = draw(st.integers(4097, 20000))
        return b"GET /" + b"a" * n + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    if kind == "value":
        n = draw(st.integers(4097, 20000))
        return b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * n + b"\r\n\r\n"
    if kind == "name":
        n = draw(st.integers(4097, 20000))
        return b"GET / HTTP/1.1\r\nHost: x\r\nX-" + b"n" * n + b": 1\r\n\r\n"
    n = draw(st.integers(MAX_HEADERS, 400))  # with Host: at least one header too many
    return (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(n)) + b"\r\n"
    )


@st.composite
def bad_content_length(draw: st.DrawFn, path: str = "/") -> bytes:
    kind = draw(st.sampled_from(["chars", "negative", "overflow", "duplicate", "with_te"]))
    start = b"POST %s HTTP/1.1\r\nHost: x\r\n" % path.encode()
    if kind == "chars":
        value = draw(st.from_regex(r"\A[0-9]{0,4}[a-zA-Z+#.*_-][0-9a-zA-Z]{0,4}\Z"))
        return start + f"Content-Length: {value}\r\n\r\n".encode()
    if kind == "negative":
        return start + b"Content-Length: -%d\r\n\r\n" % draw(st.integers(0, 10**6))
    if kind == "overflow":
        digits = draw(st.integers(21, 60))
        return start + b"Content-Length: 9" + b"9" * (digits - 1) + b"\r\n\r\n"
    if kind == "duplicate":
        a, b = draw(st.lists(st.integers(0, 99), min_size=2, max_size=2, unique=True))
        return start + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (a, b) + b"x" * a
    return start + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()
