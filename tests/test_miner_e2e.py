"""The miner daemon end to end on loopback with a localnet file (acceptance tests of issue 8).

The daemon runs as a real process (``python -m soundsright_async.miner``) with a systemd notify
socket the test owns; a validator with permit and stake, and a plain neuron, call it over
btauth/1. Block time and task intervals are a fraction of a second so everything settles fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from soundsright_async.chain._localnet_db import LocalnetDB
from soundsright_async.cli import main as cli_main
from soundsright_async.net import PeerRejectedError, SignedClient
from soundsright_async.protocol import (
    FEEDBACK_PATH,
    MODEL_PATH,
    FeedbackRequest,
    FeedbackResponse,
    MetricStats,
    MinerResult,
    ModelRequest,
    ModelResponse,
    Winner,
)
from soundsright_async.wallet import create_wallet, load_hotkey

NETUID = 7
REV1 = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
REV2 = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Net:
    tmp: Path
    db: LocalnetDB
    wallets: Path
    miner_ss58: str
    validator: Any
    plain: Any
    port: int
    health_port: int
    notify_path: Path

    def config(self, revision: str) -> Path:
        path = self.tmp / "miner.toml"
        path.write_text(
            f"""
netuid = {NETUID}
data_dir = "{self.tmp / "data"}"

[chain]
network = "localnet"
localnet_path = "{self.db.path}"
call_timeout_s = 2.0
min_validator_stake = 1000.0

[wallet]
name = "miner"
hotkey = "default"
path = "{self.wallets}"

[logging]
format = "json"
level = "debug"

[server]
host = "127.0.0.1"
port = {self.port}
shutdown_timeout_s = 3.0

[health]
port = {self.health_port}

[upkeep]
metagraph_interval_s = 0.3
commitment_interval_s = 0.3
endpoint_interval_s = 0.3
retry_backoff_s = 0.1
retry_backoff_max_s = 0.4
rate_limit_wait_s = 0.5

[model]
competition = "DENOISING_16000HZ"
namespace = "ns"
name = "enhancer"
revision = "{revision}"
"""
        )
        return path

    def commitment(self) -> tuple[str, int] | None:
        c = self.db.commitments(NETUID).get(self.miner_ss58)
        return None if c is None else (c.data, c.block)

    def endpoint(self) -> str | None:
        n = self.db.metagraph(NETUID).by_hotkey(self.miner_ss58)
        return None if n is None else n.endpoint


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    wallets = tmp_path / "wallets"
    db = LocalnetDB(tmp_path / "localnet.sqlite")
    db.init(netuid=NETUID, block_time=0.1)
    keys = {}
    for name, stake, permit in (
        ("miner", 0.0, False),
        ("validator", 5000.0, True),
        ("plain", 9000.0, False),
    ):
        info = create_wallet(name, "default", wallets)
        db.register(NETUID, info.hotkey_ss58, info.coldkey_ss58, stake=stake, validator=permit)
        keys[name] = load_hotkey(name, "default", wallets)
    notify = tmp_path / "notify.sock"
    return Net(
        tmp_path,
        db,
        wallets,
        keys["miner"].ss58_address,
        keys["validator"],
        keys["plain"],
        _free_port(),
        _free_port(),
        notify,
    )


class Daemon:
    def __init__(self, config: Path, notify: Path, log: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(FileNotFoundError):
            notify.unlink()
        self.sock.bind(str(notify))
        self.sock.setblocking(False)
        self.log = log.open("ab")
        env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "soundsright_async.miner", "--config", str(config)],
            stdout=self.log,
            stderr=self.log,
            env=env,
            cwd=ROOT,
        )
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    async def stop(self, limit_s: float = 15.0) -> int:
        self.drain()  # room in the socket queue for STOPPING=1
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, limit_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        code = self.proc.wait()
        self.drain()
        self.sock.close()
        self.log.close()
        return code


async def until(what: str, check: Callable[[], Any], limit_s: float = 20.0) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(net: Net, revision: str) -> AsyncIterator[Daemon]:
    d = Daemon(net.config(revision), net.notify_path, net.tmp / "miner.log")
    try:
        await until("READY=1", lambda: any("READY=1" in m for m in d.drain()))
        yield d
    finally:
        if d.proc.poll() is None:
            await d.stop()


def _expected_commitment(net: Net, revision: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    argv = ["commitment", "--namespace", "ns", "--name", "enhancer", "--revision", revision,
            "--hotkey", net.miner_ss58, "--competition", "DENOISING_16000HZ"]  # fmt: skip
    assert cli_main(argv) == 0
    return capsys.readouterr().out.strip()


def _feedback(miner: str) -> FeedbackRequest:
    return FeedbackRequest(
        competition="DENOISING_16000HZ",
        epoch=12,
        seed=987654321,
        result=MinerResult(
            hotkey=miner,
            hf_model_namespace="ns",
            hf_model_name="enhancer",
            hf_model_revision=REV1,
            block=100,
            metrics={
                "PESQ": MetricStats(mean=2.5, ci_low=2.4, ci_high=2.6),
                "ESTOI": MetricStats(mean=0.8),
            },
        ),
        winners={
            "PESQ": Winner(
                hotkey="5Gwinner",
                uid=3,
                hf_model_namespace="w",
                hf_model_name="m",
                hf_model_revision=REV2,
                score=3.1,
            ),
            "ESTOI": Winner(
                hotkey=miner,
                hf_model_namespace="ns",
                hf_model_name="enhancer",
                hf_model_revision=REV1,
                score=0.8,
            ),
        },
    )


async def _get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.read()


def _metric(text: bytes, name: str, **labels: str) -> float:
    want = "soundsright_miner_" + name
    if labels:
        want += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in text.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


async def test_miner_end_to_end_on_localnet(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    want1 = _expected_commitment(net, REV1, capsys)
    endpoint = f"127.0.0.1:{net.port}"
    async with running(net, REV1) as daemon:
        assert any("STATUS=serving DENOISING_16000HZ" in m for m in daemon.messages)
        first = await until("commitment", lambda: (c := net.commitment()) and c[0] == want1 and c)
        await until("endpoint", lambda: net.endpoint() == endpoint)

        async with SignedClient(net.validator, deadline_s=5) as v:
            got = await v.call(
                endpoint, MODEL_PATH, ModelRequest(competition="DENOISING_16000HZ"),
                ModelResponse, receiver=net.miner_ss58,
            )  # fmt: skip
            assert got is not None
            assert (got.hf_model_namespace, got.hf_model_name, got.hf_model_revision) == (
                "ns",
                "enhancer",
                REV1,
            )
            other = await v.call(
                endpoint, MODEL_PATH, ModelRequest(competition="DENOISING_48000HZ"),
                ModelResponse, receiver=net.miner_ss58,
            )  # fmt: skip
            assert other is None  # 404: no model for that competition
            ok = await v.call(
                endpoint, FEEDBACK_PATH, _feedback(net.miner_ss58), FeedbackResponse,
                receiver=net.miner_ss58,
            )  # fmt: skip
            assert ok is not None
            assert ok.ok
        async with SignedClient(net.plain, deadline_s=5) as p:
            with pytest.raises(PeerRejectedError) as info:
                await p.call(
                    endpoint, MODEL_PATH, ModelRequest(competition="DENOISING_16000HZ"),
                    ModelResponse, receiver=net.miner_ss58,
                )  # fmt: skip
            assert info.value.status == 403
            assert "no validator permit" in info.value.problem

        lines = (net.tmp / "data/feedback.jsonl").read_bytes().splitlines()
        assert len(lines) == 1
        rec = orjson.loads(lines[0])
        assert rec["validator"] == net.validator.ss58_address
        assert rec["feedback"]["result"]["metrics"]["PESQ"]["mean"] == 2.5

        status, body = await _get(f"http://127.0.0.1:{net.health_port}/healthz")
        health = orjson.loads(body)
        assert status == 200
        assert health["commitment"]["ok"] is True
        assert health["commitment"]["block"] == first[1]
        assert health["metagraph"]["last_sync"] is not None
        assert health["feedback"]["received"] == 1
        status, text = await _get(f"http://127.0.0.1:{net.health_port}/metrics")
        assert status == 200
        assert _metric(text, "requests_total", path="/v3/model", status="200") == 1
        assert _metric(text, "requests_total", path="/v3/model", status="403") == 1
        assert _metric(text, "requests_total", path="/v3/model", status="404") == 1
        assert _metric(text, "feedback_total") == 1
        assert _metric(text, "commitment_ok") == 1
        assert any("WATCHDOG=1" in m for m in daemon.drain())
        assert await daemon.stop() == 0
        assert any("STOPPING=1" in m for m in daemon.messages)

    capsys.readouterr()
    assert cli_main(["feedback", "show", "--data-dir", str(net.tmp / "data"), "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    d16 = shown["competitions"]["DENOISING_16000HZ"]
    assert d16["epoch"] == 12
    assert d16["validators"] == [net.validator.ss58_address]
    assert d16["metrics"]["PESQ"]["ours"] == 2.5
    assert d16["metrics"]["PESQ"]["winner"] == 3.1
    assert d16["metrics"]["PESQ"]["gap"] == pytest.approx(-0.6)
    assert d16["metrics"]["ESTOI"]["we_won"] is True
    assert cli_main(["feedback", "show", "--data-dir", str(net.tmp / "data")]) == 0
    text_out = capsys.readouterr().out
    assert "DENOISING_16000HZ  epoch 12" in text_out
    assert "<- you" in text_out

    # Restarting with the same revision keeps the commitment (and its block) ...
    async with running(net, REV1) as daemon:
        await until("endpoint", lambda: net.endpoint() == endpoint)
        await asyncio.sleep(0.5)
        assert net.commitment() == first
        assert await daemon.stop() == 0
    # ... a new revision is committed again, in a later block.
    want2 = _expected_commitment(net, REV2, capsys)
    async with running(net, REV2) as daemon:
        second = await until("re-commit", lambda: (c := net.commitment()) and c[0] == want2 and c)
        assert second[1] > first[1]
        assert await daemon.stop() == 0


def _move(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        a = src.with_name(src.name + suffix)
        if a.exists():
            a.rename(dst.with_name(dst.name + suffix))


async def test_chain_outage_keeps_http_up_and_catches_up(net: Net) -> None:
    endpoint = f"127.0.0.1:{net.port}"
    metrics_url = f"http://127.0.0.1:{net.health_port}/metrics"
    async with running(net, REV1) as daemon:
        await until("commitment", lambda: net.commitment() is not None)
        await until("endpoint", lambda: net.endpoint() == endpoint)
        away = net.tmp / "away.sqlite"
        _move(net.db.path, away)  # the chain is gone
        down_at = time.monotonic()
        async with SignedClient(net.validator, deadline_s=5) as v:
            for _ in range(3):
                got = await v.call(
                    endpoint, MODEL_PATH, ModelRequest(competition="DENOISING_16000HZ"),
                    ModelResponse, receiver=net.miner_ss58,
                )  # fmt: skip
                assert got is not None
                assert got.hf_model_revision == REV1
                await asyncio.sleep(0.5)
        _, text = await _get(metrics_url)
        errors = _metric(text, "chain_errors_total", task="metagraph")
        elapsed = time.monotonic() - down_at
        assert errors >= 2  # it keeps retrying ...
        assert errors <= elapsed / 0.4 + 4  # ... with back-off (capped at 0.4 s), never a spin
        assert daemon.proc.poll() is None

        # While the chain is away, our commitment and endpoint are wiped there.
        conn = sqlite3.connect(away)
        conn.execute("DELETE FROM commitments")
        conn.execute("UPDATE neurons SET endpoint = NULL")
        conn.commit()
        conn.close()
        _move(away, net.db.path)  # the chain is back: the miner catches up
        await until("re-commit", lambda: net.commitment() is not None)
        await until("re-publish", lambda: net.endpoint() == endpoint)
        _, text = await _get(metrics_url)
        after = _metric(text, "chain_errors_total", task="metagraph")
        await asyncio.sleep(1.0)
        _, text = await _get(metrics_url)
        assert _metric(text, "chain_errors_total", task="metagraph") == after
        _status, body = await _get(f"http://127.0.0.1:{net.health_port}/healthz")
        assert orjson.loads(body)["commitment"]["ok"] is True
        assert await daemon.stop() == 0
