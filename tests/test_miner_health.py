"""``/healthz`` reflects reality (issue 15): ok as soon as the chain holds our endpoint and model,
degraded within one sync interval of a chain failure, a failing task shown as failing; a corrupt
localnet file is a chain error, not a task crash."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_miner_daemon import MINER, network, running, settings, until

from soundsright_async.chain import ChainError, ChainUnavailableError
from soundsright_async.chain._localnet_db import LocalnetDB
from soundsright_async.chain.localnet import LocalnetChain
from soundsright_async.miner import Miner
from soundsright_async.miner._metrics import health_report


def _health(miner: Miner) -> dict[str, Any]:
    return health_report(miner.state, stale_after_s=3600.0)


async def test_ok_as_soon_as_the_published_endpoint_is_confirmed(tmp_path: Path) -> None:
    # Long intervals: only the sync the endpoint task asks for after its write can confirm it.
    s = settings(tmp_path, metagraph_interval_s=60.0, endpoint_interval_s=60.0)
    net = network()
    miner = Miner(s, hotkey=MINER, chain=net.chain(MINER.ss58_address))
    started = time.monotonic()
    async with running(miner):
        await until("ok", lambda: _health(miner)["status"] == "ok", limit_s=5.0)
        took = time.monotonic() - started
        report = _health(miner)
    assert took < 3.0
    assert report["problems"] == []
    assert report["endpoint"]["ok"] is True
    assert {k: v["state"] for k, v in report["tasks"].items()} == {
        "commitment": "running",
        "endpoint": "running",
        "health": "running",
        "http": "running",
        "metagraph": "running",
    }


async def test_a_chain_outage_degrades_within_one_sync_and_shows_the_failing_tasks(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, metagraph_interval_s=0.3, retry_backoff_s=0.5, retry_backoff_max_s=1.0)
    net = network()
    miner = Miner(s, hotkey=MINER, chain=net.chain(MINER.ss58_address))
    async with running(miner):
        await until("ok", lambda: _health(miner)["status"] == "ok")
        for _ in range(30):
            net.inject(ChainUnavailableError("connection refused", network="fake", netuid=1))
        t0 = time.monotonic()
        board = miner.state.board.tasks
        await until("sync failed", lambda: board["metagraph"].state == "retrying", limit_s=3.0)
        assert time.monotonic() - t0 < 0.3 + 0.2  # one sync interval (+ scheduling)
        report = _health(miner)
        assert report["status"] == "degraded"
        sync = report["tasks"]["metagraph"]
        assert sync["state"] == "retrying"
        assert sync["failures"] >= 1
        assert (
            sync["last_error"] == "ChainUnavailableError: chain fake netuid 1: connection refused"
        )
        assert report["problems"][0] == (
            "chain: the last metagraph sync failed "
            "(ChainUnavailableError: chain fake netuid 1: connection refused)"
        )
        net.pending.clear()
        await until("ok again", lambda: _health(miner)["status"] == "ok", limit_s=5.0)


async def test_a_corrupt_localnet_file_is_a_chain_error(tmp_path: Path) -> None:
    db = LocalnetDB(tmp_path / "ln.sqlite")
    db.init(netuid=1)
    db.path.write_bytes(b"this is not a database" * 200)
    chain = LocalnetChain(db.path, netuid=1, hotkey=MINER, call_timeout_s=2.0)
    with pytest.raises(ChainError, match=r"file is not a database$"):
        await chain.metagraph()
    await chain.aclose()
    chain = LocalnetChain(db.path, netuid=1, hotkey=MINER, call_timeout_s=2.0)
    miner = Miner(settings(tmp_path / "m"), hotkey=MINER, chain=chain)
    async with running(miner):
        await until("failing", lambda: miner.state.board.tasks["metagraph"].failures >= 2)
        assert miner.state.counter("task_restarts_total", task="metagraph") == 0
        assert miner.state.tasks["metagraph"] == "retrying"
        assert _health(miner)["status"] == "degraded"
    await chain.aclose()


def test_metrics_carry_the_connection_guard_counters(tmp_path: Path) -> None:
    from soundsright_async.miner._metrics import prometheus_text
    from soundsright_async.runtime import ConnectionGuard, ServerLimits

    miner = Miner(settings(tmp_path), hotkey=MINER, chain=network().chain(MINER.ss58_address))
    guard = ConnectionGuard(ServerLimits())
    guard.stats.refused, guard.stats.header_timeouts = 7, 2
    miner.state.set_http_guard(guard)
    text = prometheus_text(miner.state)
    assert "soundsright_miner_http_open_connections 0\n" in text
    assert 'soundsright_miner_http_connections_total{outcome="refused"} 7\n' in text
    assert 'soundsright_miner_http_connections_total{outcome="header_timeouts"} 2\n' in text
    assert 'soundsright_miner_http_connections_total{outcome="bad_requests"} 0\n' in text
