"""The miner daemon in-process over the in-memory fake chain: tasks, outage, restarts, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from bittensor.sp_core import Keypair

from soundsright_async.chain import ChainUnavailableError, WriteResult
from soundsright_async.chain.fake import FakeNetwork
from soundsright_async.config import MinerSettings
from soundsright_async.miner import Miner, SdNotifier
from soundsright_async.miner.feedback import FeedbackRecord, FeedbackStore
from soundsright_async.net import PeerRejectedError, SignedClient
from soundsright_async.protocol import (
    FEEDBACK_PATH,
    MODEL_PATH,
    FeedbackRequest,
    FeedbackResponse,
    ModelRequest,
    ModelResponse,
    parse_commitment,
)

MINER = Keypair.create_from_uri("//Miner")
VALIDATOR = Keypair.create_from_uri("//Validator")
POOR = Keypair.create_from_uri("//PoorValidator")
REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"


def settings(tmp: Path, **upkeep: float) -> MinerSettings:
    intervals = {
        "metagraph_interval_s": 0.05,
        "commitment_interval_s": 0.05,
        "endpoint_interval_s": 0.05,
        "retry_backoff_s": 0.05,
        "retry_backoff_max_s": 0.2,
        "rate_limit_wait_s": 0.3,
        "restart_backoff_s": 0.05,
        "restart_backoff_max_s": 0.2,
        **upkeep,
    }
    return MinerSettings.model_validate(
        {
            "netuid": 1,
            "data_dir": tmp,
            "chain": {"network": "finney", "min_validator_stake": 1000.0},
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout_s": 2.0},
            "health": {"port": 0},
            "upkeep": intervals,
            "model": {
                "competition": "DENOISING_16000HZ",
                "namespace": "ns",
                "name": "m",
                "revision": REV,
            },
        }
    )


def network() -> FakeNetwork:
    net = FakeNetwork(netuid=1, block=100)
    net.register(MINER.ss58_address)
    net.register(VALIDATOR.ss58_address, stake=5000.0, validator=True)
    net.register(POOR.ss58_address, stake=10.0, validator=True)
    return net


@contextlib.asynccontextmanager
async def running(miner: Miner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(miner.run())
    try:
        async with asyncio.timeout(5):
            await miner.ready.wait()
        yield task
    finally:
        miner.stop()
        async with asyncio.timeout(10):
            await task


async def until(what: str, check: Callable[[], Any], limit_s: float = 5.0) -> Any:
    deadline = time.monotonic() + limit_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return value


def committed(net: FakeNetwork, miner: Miner) -> bool:
    entry = net.commitments.get(MINER.ss58_address)
    return entry is not None and parse_commitment(entry[0]) == miner.state.commitment_wanted


def endpoint_of(net: FakeNetwork) -> str | None:
    return net.neurons[0].endpoint


async def ask_model(endpoint: str, key: Keypair = VALIDATOR) -> ModelResponse | None:
    async with SignedClient(key, deadline_s=3) as c:
        return await c.call(
            endpoint, MODEL_PATH, ModelRequest(competition="DENOISING_16000HZ"), ModelResponse,
            receiver=MINER.ss58_address,
        )  # fmt: skip


async def test_serves_commits_publishes_and_stores_feedback(tmp_path: Path) -> None:
    net = network()
    chain = net.chain(MINER.ss58_address)
    miner = Miner(settings(tmp_path), hotkey=MINER, chain=chain)
    async with running(miner):
        host, port = miner.state.http_address or ("", 0)
        endpoint = f"{host}:{port}"
        await until("commit", lambda: committed(net, miner))
        await until("endpoint", lambda: endpoint_of(net) == endpoint)
        await until("confirmed", lambda: miner.state.endpoint_ok and miner.state.commitment_ok)
        got = await ask_model(endpoint)
        assert got is not None
        assert got.hf_model_revision == REV
        with pytest.raises(PeerRejectedError) as info:
            await ask_model(endpoint, POOR)
        assert info.value.status == 403
        assert "stake 10 < 1000" in info.value.problem
        fb = FeedbackRequest(competition="DENOISING_16000HZ", epoch=1, seed=5, result=None)
        async with SignedClient(VALIDATOR, deadline_s=3) as c:
            resp = await c.call(
                endpoint, FEEDBACK_PATH, fb, FeedbackResponse, receiver=MINER.ss58_address
            )
        assert resp is not None
        assert resp.ok
        # Garbage from a validator is a 400; the daemon keeps serving.
        async with SignedClient(VALIDATOR, deadline_s=3) as c:
            bad = await c.post(endpoint, FEEDBACK_PATH, b"{not json", receiver=MINER.ss58_address)
        assert bad.status == 400
        assert (await ask_model(endpoint)) is not None
        blocks = net.commitments[MINER.ss58_address][1]
        net.advance(50)
        await asyncio.sleep(0.2)
        assert net.commitments[MINER.ss58_address][1] == blocks  # no re-commit when it matches
    assert not chain.closed  # the caller owns the chain client
    lines = (tmp_path / "feedback.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["feedback"]["epoch"] for x in lines] == [1]


async def test_fake_chain_outage_backs_off_and_catches_up(tmp_path: Path) -> None:
    net = network()
    miner = Miner(settings(tmp_path), hotkey=MINER, chain=net.chain(MINER.ss58_address))
    async with running(miner):
        endpoint = ":".join(map(str, miner.state.http_address or ()))
        await until("commit", lambda: committed(net, miner))
        await until("endpoint", lambda: miner.state.endpoint_ok)
        del net.commitments[MINER.ss58_address]  # lost while the chain is down
        started = time.monotonic()
        for _ in range(12):
            net.inject(ChainUnavailableError("connection refused", network="fake", netuid=1))
        assert (await ask_model(endpoint)) is not None  # HTTP answers during the outage
        await until("errors consumed", lambda: not net.pending)
        took = time.monotonic() - started
        errors = sum(
            v for (name, _), v in miner.state.counters.items() if name == "chain_errors_total"
        )
        assert errors == 12
        assert took >= 0.3  # 12 errors over 3 tasks with back-off 0.05 .. 0.2 s is not a spin
        await until("re-commit", lambda: committed(net, miner))
        assert (await ask_model(endpoint)) is not None


async def test_rate_limited_commit_waits(tmp_path: Path) -> None:
    net = network()
    net.inject(WriteResult.rate_limited("SpaceLimitExceeded: try later"))
    miner = Miner(settings(tmp_path), hotkey=MINER, chain=net.chain(MINER.ss58_address))
    started = time.monotonic()
    async with running(miner):
        await until("commit", lambda: committed(net, miner))
        assert time.monotonic() - started >= 0.3
        assert miner.state.counter("commits_total", result="rate_limited") == 1
        assert miner.state.counter("commits_total", result="ok") == 1


async def test_crashed_task_is_restarted(tmp_path: Path) -> None:
    net = network()
    net.inject(RuntimeError("bug in an adapter"))  # not a ChainError: the task crashes
    miner = Miner(settings(tmp_path), hotkey=MINER, chain=net.chain(MINER.ss58_address))
    async with running(miner):
        await until("commit", lambda: committed(net, miner))
        await until("synced", lambda: miner.state.last_sync)
        restarts = {
            dict(labels)["task"]: v
            for (name, labels), v in miner.state.counters.items()
            if name == "task_restarts_total"
        }
        assert sum(restarts.values()) == 1
        await until("running", lambda: set(miner.state.tasks.values()) == {"running"})


class SlowStore(FeedbackStore):
    async def append(self, record: FeedbackRecord) -> None:
        await asyncio.sleep(0.5)
        await super().append(record)


async def test_shutdown_finishes_in_flight_requests(tmp_path: Path) -> None:
    net = network()
    miner = Miner(settings(tmp_path), hotkey=MINER, chain=net.chain(MINER.ss58_address))
    miner.store = SlowStore(tmp_path, max_file_bytes=1 << 20, keep_files=1)
    task = asyncio.create_task(miner.run())
    await miner.ready.wait()
    endpoint = ":".join(map(str, miner.state.http_address or ()))
    await until("metagraph", lambda: miner.state.last_sync)
    fb = FeedbackRequest(competition="DENOISING_16000HZ", epoch=2, seed=5, result=None)
    async with SignedClient(VALIDATOR, deadline_s=5) as c:
        call = asyncio.create_task(
            c.call(endpoint, FEEDBACK_PATH, fb, FeedbackResponse, receiver=MINER.ss58_address)
        )
        await asyncio.sleep(0.2)  # the request is in flight
        miner.stop()
        resp = await call
        await task
    assert resp is not None
    assert resp.ok
    assert (tmp_path / "feedback.jsonl").read_bytes().count(b"\n") == 1
    with pytest.raises(aiohttp.ClientError):  # no longer accepting
        async with aiohttp.ClientSession() as s, s.post(f"http://{endpoint}/v3/model") as r:
            await r.read()


async def test_ready_watchdog_and_health_endpoints(tmp_path: Path) -> None:
    name = f"@soundsright-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name[1:].encode())
    sock.setblocking(False)
    notifier = SdNotifier.from_env({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "100000"})
    net = network()
    miner = Miner(
        settings(tmp_path), hotkey=MINER, chain=net.chain(MINER.ss58_address), notifier=notifier
    )
    got: list[str] = []

    def drain() -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(sock.recv(1024).decode())
        return got

    try:
        async with running(miner):
            await until("READY", lambda: any(m.startswith("READY=1\nSTATUS=") for m in drain()))
            await until("WATCHDOG", lambda: drain().count("WATCHDOG=1") >= 2)
            await until("commit", lambda: miner.state.commitment_ok)
            health = ":".join(map(str, miner.state.health_address or ()))
            assert health.startswith("127.0.0.1:")
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://{health}/healthz") as r:
                    report = await r.json()
                async with s.get(f"http://{health}/metrics") as r:
                    text = await r.text()
                    ctype = r.headers["Content-Type"]
        assert any(m.startswith("STOPPING=1") for m in drain())
    finally:
        sock.close()
    assert report["hotkey"] == MINER.ss58_address
    assert report["model"]["commitment"] == miner.state.commitment_wanted
    assert report["registered"] is True
    assert report["uid"] == 0
    assert "# TYPE soundsright_miner_requests_total counter" in text
    assert "soundsright_miner_commitment_ok 1" in text
    assert 'soundsright_miner_info{version="' in text
    assert ctype.startswith("text/plain")
