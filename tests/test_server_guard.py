"""The connection guard of ``runtime.serve_app`` on loopback: deadlines, cap, reserve, per-address
limit, summary logging, and btauth's identity check before the body."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web
from bittensor import http_auth as ha
from bittensor.sp_core import Keypair
from structlog.testing import capture_logs

from soundsright_async.chain.types import Metagraph, Neuron
from soundsright_async.net import CallerRule, MetagraphCache, btauth_middleware
from soundsright_async.runtime import ConnectionGuard, ServerLimits, admit, serve_app
from soundsright_async.runtime._guard import clamp_to_nofile

MINER = Keypair.create_from_uri("//Miner")
VALIDATOR = Keypair.create_from_uri("//Validator")


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


def _app(*middlewares: Any) -> web.Application:
    app = web.Application(middlewares=list(middlewares))
    app.router.add_post("/echo", _echo)
    app.router.add_get("/ok", _ok)
    app.router.add_get("/admit", _admit)
    return app


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _admit(request: web.Request) -> web.Response:
    admit(request)
    return web.Response(text="ok")


@asynccontextmanager
async def served(
    app: web.Application, limits: ServerLimits
) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    guards: list[ConnectionGuard] = []
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(
            lambda task_status: serve_app(
                task_status,
                app=app,
                host="127.0.0.1",
                port=0,
                shutdown_timeout_s=0.5,
                name="t",
                limits=limits,
                on_guard=guards.append,
            )
        )
        try:
            yield port, guards[0]
        finally:
            tg.cancel_scope.cancel()


async def _closed_within(reader: asyncio.StreamReader, limit_s: float) -> float:
    """Seconds until the server closes the connection (data before EOF is discarded)."""
    t0 = time.monotonic()
    async with asyncio.timeout(limit_s):
        while True:
            try:
                if await reader.read(4096) == b"":
                    return time.monotonic() - t0
            except ConnectionResetError:
                return time.monotonic() - t0


async def _connect(port: int, source: str = "127.0.0.1") -> tuple[Any, Any]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _refused(port: int) -> bool:
    """A connection the server refuses: reset during the connect, or closed at once after it."""
    try:
        reader, writer = await _connect(port)
    except ConnectionResetError:
        return True
    try:
        return await _closed_within(reader, 2.0) < 2.0
    finally:
        writer.close()


async def _until(check: Callable[[], bool], limit_s: float = 3.0) -> None:
    async with asyncio.timeout(limit_s):
        while not check():  # noqa: ASYNC110 - polling the guard's counters
            await asyncio.sleep(0.01)


async def test_half_sent_headers_are_cut_at_the_header_deadline() -> None:
    limits = ServerLimits(header_timeout_s=0.4, admit_on_headers=True)
    async with served(_app(), limits) as (port, guard):
        reader, writer = await _connect(port)
        writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n")
        took = await _closed_within(reader, 3.0)
        writer.close()
        assert 0.35 <= took < 1.5
        assert guard.stats.header_timeouts == 1
        assert guard.open == 0


async def test_a_trickled_body_is_cut_at_the_body_deadline() -> None:
    limits = ServerLimits(body_timeout_s=0.5, admit_on_headers=True)
    async with served(_app(), limits) as (port, guard):
        reader, writer = await _connect(port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        t0 = time.monotonic()
        for _ in range(20):  # one byte every 0.1 s: never done within 0.5 s
            try:
                writer.write(b"c")
                await writer.drain()
            except ConnectionError:
                break
            if reader.at_eof():
                break
            await asyncio.sleep(0.1)
            if guard.stats.body_timeouts:
                break
        await _until(lambda: guard.open == 0)
        writer.close()
        assert 0.45 <= time.monotonic() - t0 < 1.5
        assert guard.stats.body_timeouts == 1
        assert guard.stats.client_gone == 0


async def test_keep_alive_requests_are_served_and_the_deadline_rearms() -> None:
    limits = ServerLimits(header_timeout_s=0.3, keepalive_timeout_s=0.2, admit_on_headers=True)
    async with served(_app(), limits) as (port, guard):
        reader, writer = await _connect(port)
        for _ in range(2):
            writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"ok")
            assert head.startswith(b"HTTP/1.1 200 OK")
        assert len(guard.admitted) == 1
        took = await _closed_within(reader, 3.0)  # idle: closed by keep-alive or header clock
        writer.close()
        assert took < 1.0
        await _until(lambda: guard.open == 0)


async def test_the_oldest_pending_connection_makes_room_and_admitted_ones_stay() -> None:
    limits = ServerLimits(max_connections=4, reserve=1, header_timeout_s=30.0)
    async with served(_app(), limits) as (port, guard):
        ar, aw = await _connect(port)
        aw.write(b"GET /admit HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await ar.readuntil(b"ok")).startswith(b"HTTP/1.1 200 OK")
        pend = [await _connect(port) for _ in range(3)]  # pending: 3 = max_connections - reserve
        await _until(lambda: len(guard.pending) == 3)
        assert guard.stats.evicted == 0
        newest = await _connect(port)  # open == max: the oldest pending one goes
        assert await _closed_within(pend[0][0], 2.0) < 2.0
        await _until(lambda: guard.open == 4)
        assert guard.stats.evicted == 1
        assert guard.stats.refused == 0
        aw.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")  # the admitted one still works
        assert (await ar.readuntil(b"ok")).startswith(b"HTTP/1.1 200 OK")
        for _, w in [*pend, newest, (ar, aw)]:
            w.close()


async def test_one_address_cannot_take_the_pending_pool() -> None:
    limits = ServerLimits(max_connections=64, reserve=8, max_pending_per_ip=2, header_timeout_s=30)
    async with served(_app(), limits) as (port, guard):
        conns = [await _connect(port) for _ in range(2)]
        await _until(lambda: len(guard.pending) == 2)
        assert await _refused(port)
        assert guard.stats.refused == 1
        other = await _connect(port, source="127.0.0.2")
        await _until(lambda: len(guard.pending) == 3)
        assert guard.pending_by_ip == {"127.0.0.1": 2, "127.0.0.2": 1}
        for _, w in [*conns, other]:
            w.close()


async def test_refusals_are_logged_as_one_summary_line_per_interval() -> None:
    limits = ServerLimits(max_pending_per_ip=1, header_timeout_s=30, log_interval_s=0.3)
    with capture_logs() as logs:
        async with served(_app(), limits) as (port, guard):
            conns = [await _connect(port)]
            await _until(lambda: len(guard.pending) == 1)
            assert [await _refused(port) for _ in range(5)] == [True] * 5
            await _until(lambda: guard.stats.refused == 5)
            await asyncio.sleep(0.45)
            for _, w in conns:
                w.close()
    lines = [e for e in logs if e["event"] == "t.connections_refused"]
    assert lines == [
        {
            "event": "t.connections_refused",
            "log_level": "warning",
            "interval_s": 0.3,
            "open": 1,
            "pending": 1,
            "accepted": 1,
            "refused": 5,
        }
    ]


async def test_a_client_that_vanishes_mid_body_is_counted_not_a_handler_failure() -> None:
    limits = ServerLimits(admit_on_headers=True)
    with capture_logs() as logs:
        async with served(_app(), limits) as (port, guard):
            _, writer = await _connect(port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.transport.abort()
            await _until(lambda: guard.stats.client_gone == 1)
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []


def _signed_app(received: list[int]) -> web.Application:
    mg = Metagraph(
        7,
        100,
        (
            Neuron(0, MINER.ss58_address, MINER.ss58_address, 0.0, 0.0, False, None),
            Neuron(1, VALIDATOR.ss58_address, VALIDATOR.ss58_address, 5e3, 5e3, True, None),
        ),
    )

    async def handler(request: web.Request) -> web.Response:
        received.append(1)
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            btauth_middleware(
                receiver=MINER.ss58_address,
                metagraph=MetagraphCache(mg),
                default_rule=CallerRule(require_permit=True, min_stake=1000.0),
            )
        ]
    )
    app.router.add_post("/v3/model", handler)
    return app


@pytest.mark.parametrize(
    ("hotkey", "status"),
    [(None, 401), (MINER.ss58_address, 403), ("5Gunregistered", 403)],
)
async def test_strangers_are_refused_from_the_headers_before_the_body_is_sent(
    hotkey: str | None, status: int
) -> None:
    received: list[int] = []
    limits = ServerLimits()
    async with served(_signed_app(received), limits) as (port, guard):
        reader, writer = await _connect(port)
        auth = (
            "" if hotkey is None else f"X-Bittensor-Version: 1\r\nX-Bittensor-Hotkey: {hotkey}\r\n"
        )
        writer.write(
            f"POST /v3/model HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n{auth}\r\n".encode()
        )  # the 200 kB body is never sent: the answer must come anyway, and the connection close
        async with asyncio.timeout(2.0):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"Connection: close" in answer
        assert received == []
        assert guard.admitted == {}


async def test_a_permitted_validator_is_admitted_before_its_body_is_read() -> None:
    received: list[int] = []
    async with served(_signed_app(received), ServerLimits()) as (port, guard):
        body = b'{"competition": "DENOISING_16000HZ"}'
        headers = ha.sign(
            VALIDATOR, method="POST", path="/v3/model", body=body, receiver_ss58=MINER.ss58_address
        )
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        reader, writer = await _connect(port)
        length = len(body)
        writer.write(b"POST /v3/model HTTP/1.1\r\nHost: x\r\n")
        writer.write(f"Content-Length: {length}\r\n{head}\r\n".encode())
        await _until(lambda: len(guard.admitted) == 1)  # admitted on the headers alone
        assert received == []
        writer.write(body)
        async with asyncio.timeout(2.0):
            status = await reader.readline()
        writer.close()
        assert status == b"HTTP/1.1 200 OK\r\n"
        assert received == [1]


async def test_unparsable_requests_are_counted_not_logged_with_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served(_app(), ServerLimits()) as (port, guard):
        for _ in range(3):
            reader, writer = await _connect(port)
            writer.write(b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")  # no Host
            async with asyncio.timeout(2.0):
                answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n")
        assert guard.stats.bad_requests == 3
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_cap_is_lowered_to_fit_the_open_file_limit() -> None:
    wanted = ServerLimits(max_connections=768, reserve=128, fd_headroom=96)
    assert clamp_to_nofile(wanted, nofile=1024) is wanted  # 768 + 96 <= 1024
    with capture_logs() as logs:
        low = clamp_to_nofile(wanted, nofile=512)
    assert (low.max_connections, low.reserve, low.header_timeout_s) == (416, 69, 10.0)
    assert [e["event"] for e in logs] == ["server.connections_clamped"]


@pytest.mark.parametrize(
    ("extra", "body"),
    [
        (b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),  # chunk size not hex
        (b"Transfer-Encoding: chunked\r\n", b"5\r\nabcdefgh\r\n0\r\n\r\n"),  # chunk too long
        (b"Content-Encoding: gzip\r\nContent-Length: 4\r\n", b"\xff\xffab"),  # not gzip
    ],
)
async def test_a_broken_body_after_the_headers_is_a_400_at_once(extra: bytes, body: bytes) -> None:
    """The body arrives after the handler started reading it: a framing error must fail the read
    now (400), not leave it waiting for the body deadline; an encoding error is a 400, not 500."""
    received: list[int] = []
    async with served(_signed_app(received), ServerLimits(body_timeout_s=5.0)) as (port, guard):
        headers = ha.sign(
            VALIDATOR, method="POST", path="/v3/model", body=body, receiver_ss58=MINER.ss58_address
        )
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        reader, writer = await _connect(port)
        writer.write(b"POST /v3/model HTTP/1.1\r\nHost: x\r\n" + extra + head + b"\r\n")
        await _until(lambda: len(guard.admitted) == 1)  # the handler is reading the body now
        t0 = time.monotonic()
        writer.write(body)
        async with asyncio.timeout(3.0):
            answer = await reader.read()
        writer.close()
        assert time.monotonic() - t0 < 1.0
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
        assert b"malformed body" in answer
        assert received == []
        assert guard.stats.body_timeouts == 0
