"""The dashboard and the epoch report of a real local competition (optional, slow): a localnet
with 1 s blocks, two miner daemons with the example models, one validator daemon benchmarking
them in real Podman containers. The dashboard is opened in headless Chromium while the epoch
runs, the report after it is judged."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, artifacts_dir, launch_browser
from containers.podman import engine_url

from soundsright_async.demo import Daemon, LocalNetwork, free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "models"
COMP = "DENOISING_16000HZ"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser()


@pytest.fixture
def procs() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for p in started:
        p.stop(30)


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def _judged(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return bool(conn.execute("SELECT 1 FROM judgements WHERE epoch = 0").fetchall())
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def until(what: str, check: Callable[[], Any], limit_s: float, *procs: Daemon) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        for p in procs:
            if not p.running():
                raise AssertionError(f"{p.config.name} exited:\n" + p.log_text()[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g}s waiting for {what}")
        await asyncio.sleep(1)


@pytest.mark.timeout(900)
async def test_dashboard_and_report_of_a_real_run(
    browser: Browser, tmp_path: Path, procs: list[Daemon]
) -> None:
    env = {"DOCKER_HOST": engine_url()}
    net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
    net.wallet("val", stake=5000, validator=True)
    miners = [
        net.add_miner("m1", EXAMPLES / "passthrough", COMP),
        net.add_miner("m2", EXAMPLES / "spectral-gate", COMP),
    ]
    for m in miners:
        procs.append(Daemon("miner", net.miner_config(m), tmp_path / f"{m.name}.log").start())
    await until("two commitments", lambda: len(net.db.commitments(net.netuid)) == 2, 90, *procs)
    port = free_port()
    config = net.validator_config(
        "val",
        competitions=[COMP],
        epoch_blocks=120,
        anchor_block=net.db.head().number + 10,
        stop_margin_blocks=10,
        dataset_size=2,
        status_port=port,
        owner=f"dash-{os.getpid()}",
        bridge_prefix="srdash",
    )
    val = Daemon("validator", config, tmp_path / "val.log", env=env).start()
    procs.append(val)

    def a_result() -> bool:
        doc = _status(port)
        return bool(doc and any(c["passed"] is not None for c in doc["candidates"]))

    await until("a first result", a_result, 400, val)
    page = await browser.open(f"http://127.0.0.1:{port}/")
    try:
        assert await page.count("#candidates tbody tr") == 2
        assert await page.count("#timeline rect.seg") >= 5  # fetch, build, start, ... score
        await page.screenshot(artifacts_dir() / "dashboard-real.png")
        assert page.errors == []
    finally:
        await page.close()

    data_dir = net.root / "validators" / "val"
    await until("epoch 0 judged", lambda: _judged(data_dir / "validator.sqlite"), 400, val)
    out = tmp_path / "report"
    run = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "soundsright_async.cli",
            "report",
            "--epoch",
            "0",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out / "epoch-0.html")
    page = await browser.open((out / "epoch-0.html").as_uri())
    try:
        assert await page.count("#metrics rect.bar") == 4  # 2 models x PESQ, ESTOI
        assert await page.count("#metrics line.ref") == 2
        assert await page.count("circle.pt") == 12  # 2 files x (2 models + unprocessed) x 2
        await page.screenshot(artifacts_dir() / "report-real.png")
        assert page.errors == []
    finally:
        await page.close()
