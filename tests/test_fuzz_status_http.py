"""Fuzzed surfaces (issue 13.4): the validator's status server (``/healthz``, ``/status``,
``/metrics``, the dashboard ``/``, ``/panel``, ``/static/...``) over a full epoch's store, and the
miner's local health server (``/healthz``, ``/metrics``), each served as its daemon serves it
(``runtime.serve_app`` with that server's connection limits).

Hypothesis draws raw requests: malformed ones (400 from the parser), and well-formed ones with
any method, path (unknown, traversal-looking, encoded), query string and extra headers, whose
status is known from the routing table (200 / 404 / 405). After each batch every route still
answers, the guard holds no connection, and resident memory grew by less than a
bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import dashboard_data as dd
import orjson
from fuzzing import (
    SAFE_PATH,
    Answer,
    bad_content_length,
    broken_request_line,
    exchange,
    fuzz,
    oversized_head,
    rss_bytes,
)
from hypothesis import strategies as st

from soundsright_async.dashboard import STATIC
from soundsright_async.miner._http import health_app
from soundsright_async.miner._state import MinerState
from soundsright_async.runtime import ConnectionGuard, ServerLimits, serve_app
from soundsright_async.validator._status import CSP, status_app

RSS_GROWTH_BOUND = 32 * 1024 * 1024
ROUTES = ("/", "/panel", "/healthz", "/status", "/metrics", *(f"/static/{n}" for n in STATIC))
MINER_ROUTES = ("/healthz", "/metrics")
JSON_ROUTES = ("/healthz", "/status")


@dataclass
class StatusServer:
    port: int
    guard: ConnectionGuard
    routes: tuple[str, ...] = ROUTES

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def status_server(tmp: Path) -> AsyncIterator[StatusServer]:
    store, state = await dd.build(tmp / "v.sqlite", "full")
    guards: list[ConnectionGuard] = []
    try:
        async with anyio.create_task_group() as tg:
            _, port = await tg.start(
                lambda task_status: serve_app(
                    task_status,
                    app=status_app(state, store),
                    host="127.0.0.1",
                    port=0,
                    shutdown_timeout_s=0.5,
                    name="status",
                    # as validator._daemon serves it
                    limits=ServerLimits(
                        max_connections=64, reserve=8, max_pending_per_ip=48, admit_on_headers=True
                    ),
                    on_guard=guards.append,
                )
            )
            try:
                yield StatusServer(port, guards[0])
            finally:
                tg.cancel_scope.cancel()
    finally:
        await store.aclose()


@asynccontextmanager
async def miner_health_server() -> AsyncIterator[StatusServer]:
    state = MinerState(
        hotkey="5Miner", competition="DENOISING_16000HZ", namespace="ns", name="m",
        revision="6bab4cf9116d72c1bc4f8e857e7cd5c40795a882", commitment_wanted="0" * 64,
    )  # fmt: skip
    guards: list[ConnectionGuard] = []
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(
            lambda task_status: serve_app(
                task_status,
                app=health_app(state, stale_after_s=60.0),
                host="127.0.0.1",
                port=0,
                shutdown_timeout_s=0.5,
                name="health",
                # as miner._daemon serves it
                limits=ServerLimits(
                    max_connections=64,
                    reserve=1,
                    header_timeout_s=5.0,
                    body_timeout_s=5.0,
                    keepalive_timeout_s=15.0,
                    admit_on_headers=True,
                    fd_headroom=64,
                ),
                on_guard=guards.append,
            )
        )
        try:
            yield StatusServer(port, guards[0], MINER_ROUTES)
        finally:
            tg.cancel_scope.cancel()


async def check_still_serving(s: StatusServer) -> None:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for path in s.routes:
            async with session.get(s.url + path) as resp:
                body = await resp.read()
                assert resp.status == 200, (path, body[:300])
        if s.routes == ROUTES:
            async with session.get(s.url + "/status") as resp:
                assert orjson.loads(await resp.read())["epoch"]["number"] == dd.EPOCH
            async with session.get(s.url + "/") as resp:
                assert resp.headers["Content-Security-Policy"] == CSP
    async with asyncio.timeout(5):
        while s.guard.open:  # noqa: ASYNC110 - the guard's own bookkeeping
            await asyncio.sleep(0.01)
    assert s.guard.pending_by_ip == {}


METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
QUERY = st.one_of(
    st.just(""),
    st.text(alphabet="abcdefxyz0123456789=&%+-_.~", max_size=60).map(lambda q: "?" + q),
)
HEADER_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)
HEADER_VALUE = st.text(alphabet=[chr(c) for c in range(0x20, 0x7F)], max_size=200).map(str.strip)
SEMANTIC_HEADERS = st.sampled_from(
    [
        "Accept-Encoding: gzip, deflate, br, *",
        "Accept-Encoding: identity;q=0",
        "Accept: */*",
        "Range: bytes=0-10",
        "If-None-Match: *",
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
        "Cookie: a=b",
        "Origin: http://evil.example",
        "X-Forwarded-For: 10.0.0.1",
        "Authorization: Bearer x",
    ]
)
TRAVERSAL_PATHS = (
    "/static/../secret.txt",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2fsecret.txt",
    "/static/app.js%00.txt",
    "/static/",
    "/static",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/panel/x",
    "/status/",
    "/healthz/../etc/passwd",
    "/static/style.css/extra",
    "/static/STYLE.CSS",
    "/static/app.js.map",
)
TRAVERSAL = st.sampled_from(TRAVERSAL_PATHS)


def route_status(method: str, path: str, routes: tuple[str, ...]) -> int:
    """The routing table's answer: ``/static/{name}`` (on the validator's server) matches any one
    segment (an encoded ``/`` included) and answers 404 for a name it does not serve; ``..``
    segments are resolved first."""
    if path in routes:
        return 200 if method in ("GET", "HEAD") else 405
    name = path.removeprefix("/static/")
    static = any(r.startswith("/static/") for r in routes)
    if static and path.startswith("/static/") and name and "/" not in name and name != "..":
        return 404 if method in ("GET", "HEAD") else 405
    return 404


@st.composite
def well_formed(draw: st.DrawFn, routes: tuple[str, ...]) -> tuple[str, bytes, int]:
    method = draw(METHODS)
    kind = draw(st.sampled_from(["route", "unknown", "traversal"]))
    if kind == "route":
        path = draw(st.sampled_from(routes))
    elif kind == "unknown":
        path = draw(SAFE_PATH.filter(lambda p: p not in routes))
    else:
        path = draw(TRAVERSAL)
    want = route_status(method, path, routes)
    headers = [
        f"X-{n}: {v}" for n, v in draw(st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=8))
    ]
    headers += draw(st.lists(SEMANTIC_HEADERS, max_size=3, unique=True))
    body = draw(st.binary(max_size=200)) if draw(st.booleans()) else b""
    if body or method in ("POST", "PUT", "PATCH"):
        headers.append(f"Content-Length: {len(body)}")
    head = "".join(f"{h}\r\n" for h in headers)
    target = path + draw(QUERY)
    raw = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n".encode()
    return f"{kind}:{method}", raw + body, want


Case = tuple[str, bytes, int]


def cases(routes: tuple[str, ...]) -> st.SearchStrategy[Case]:
    return st.one_of(
        well_formed(routes),
        broken_request_line().map(lambda b: ("broken_line", b, 400)),
        oversized_head().map(lambda b: ("oversized_head", b, 400)),
        bad_content_length("/healthz").map(lambda b: ("bad_length", b, 400)),
    )


async def fuzz_surface(s: StatusServer, max_examples: int) -> None:
    seen: dict[str, set[int]] = {}
    await check_still_serving(s)
    for path in TRAVERSAL_PATHS:  # every one at least once, whatever hypothesis draws
        raw = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        assert (await exchange(s.port, [raw])).status == 404, path

    async def case(c: Case) -> None:
        name, raw, want = c
        t0 = time.monotonic()
        got = await exchange(s.port, [raw], limit_s=4.0)
        assert got.status == want, (name, got, raw[:300])
        assert time.monotonic() - t0 < 2.0, name
        if want == 200 and raw.startswith(b"GET /"):
            path = raw.split(b" ", 2)[1].split(b"?")[0].decode()
            if path in JSON_ROUTES:
                assert isinstance(orjson.loads(got.body), dict), (name, got)
        assert got != Answer(None, closed=True)
        seen.setdefault(name, set()).add(want)

    rss0 = 0
    for batch in range(3):
        await fuzz(cases(s.routes), case, max_examples=max_examples, limit_s=8.0)
        await check_still_serving(s)
        if batch == 0:  # the first batch also warms hypothesis and every cache up
            rss0 = rss_bytes()
    grew = rss_bytes() - rss0
    assert grew < RSS_GROWTH_BOUND, grew
    statuses = set().union(*seen.values())
    assert statuses == {200, 400, 404, 405}, seen


async def test_any_request_gets_its_status_and_the_dashboard_keeps_serving(
    tmp_path: Path,
) -> None:
    async with status_server(tmp_path) as s:
        await fuzz_surface(s, max_examples=120)


async def test_any_request_gets_its_status_and_the_miner_health_server_keeps_serving() -> None:
    async with miner_health_server() as s:
        await fuzz_surface(s, max_examples=80)
