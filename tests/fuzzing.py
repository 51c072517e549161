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


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def one_of_cases(*cases: tuple[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``(name, value)`` tuples from several named strategies (the name shows which family a
    failing example came from)."""
    return st.one_of(*(st.tuples(st.just(name), strategy) for name, strategy in cases))
