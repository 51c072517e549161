"""The validator daemon against hostile miners and a chain outage (acceptance of the validator
issue): nothing stalls the epoch, every failure has its reason in ``/status`` and the store, the
daemon stays up through the outage, shows the stale task in ``/healthz``, catches up and sets
weights once the chain is back. Real processes, real Podman containers.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from containers.hostile import hostile_repo
from containers.podman import engine_url

from soundsright_async.chain.localnet import LocalnetChain
from soundsright_async.demo import Daemon, LocalNetwork, free_port
from soundsright_async.protocol import (
    FEEDBACK_PATH,
    MODEL_PATH,
    FeedbackResponse,
    ModelRequest,
    ModelResponse,
    commitment_hash,
    commitment_payload,
    decode_message,
    encode_message,
)
from soundsright_async.wallet import load_hotkey

ROOT = Path(__file__).resolve().parent.parent
COMP = "DENOISING_16000HZ"
OTHER_REV = "0123456789abcdef0123456789abcdef01234567"

pytestmark = pytest.mark.slow


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return []  # not created yet
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def until(what: str, check: Callable[[], Any], limit_s: float, proc: Daemon) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        if not proc.running():
            raise AssertionError(
                f"the validator exited waiting for {what}:\n{proc.log_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g}s waiting for {what}")
        await asyncio.sleep(0.5)


async def _fake_miner(answer: ModelResponse) -> AsyncIterator[int]:
    """A miner endpoint that answers ``answer`` (no auth check: it only has to be reachable)."""

    async def model(request: web.Request) -> web.Response:
        req = decode_message(ModelRequest, await request.read())
        if req.competition != answer.competition:
            return web.Response(status=404)
        return web.Response(body=encode_message(answer), content_type="application/json")

    async def feedback(_: web.Request) -> web.Response:
        return web.Response(
            body=encode_message(FeedbackResponse()), content_type="application/json"
        )

    app = web.Application()
    app.router.add_post(MODEL_PATH, model)
    app.router.add_post(FEEDBACK_PATH, feedback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.mark.timeout(1200)
async def test_hostile_miners_and_a_chain_outage(tmp_path: Path) -> None:
    docker_host = engine_url()
    net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
    net.wallet("val", stake=5000, validator=True)
    good_rev = net.publish(ROOT / "examples/models/spectral-gate", "good/spectral-gate")
    hang_rev = net.publish(hostile_repo(tmp_path / "repos", "hang"), "bad/hang")

    silent_sock = socket.socket()
    silent_sock.bind(("127.0.0.1", 0))
    silent_sock.listen(16)
    silent_port = silent_sock.getsockname()[1]

    miners = {
        "good": ("good", "spectral-gate", good_rev, good_rev),
        "hang": ("bad", "hang", hang_rev, hang_rev),
        "liar": ("good", "spectral-gate", good_rev, OTHER_REV),  # commits another revision
        "silent": ("good", "spectral-gate", good_rev, good_rev),
    }
    servers = []
    hotkeys: dict[str, str] = {}
    try:
        for name, (ns, model, rev, committed) in miners.items():
            hotkeys[name] = net.wallet(name)
            if name == "silent":
                port = silent_port
            else:
                gen = _fake_miner(
                    ModelResponse(
                        competition=COMP,
                        hf_model_namespace=ns,
                        hf_model_name=model,
                        hf_model_revision=rev,
                    )
                )
                port = await gen.__anext__()
                servers.append(gen)
            key = load_hotkey(name, "default", net.wallets)
            async with LocalnetChain(net.db.path, netuid=net.netuid, hotkey=key) as chain:
                digest = commitment_hash(
                    namespace=ns,
                    name=model,
                    revision=committed,
                    hotkey=hotkeys[name],
                    competition=COMP,
                )
                assert (await chain.commit(commitment_payload(digest))).ok
                assert (await chain.serve("127.0.0.1", port)).ok

        status_port = free_port()
        owner = f"faults-{os.getpid()}"
        config = net.validator_config(
            "val",
            competitions=[COMP],
            epoch_blocks=150,
            anchor_block=net.db.head().number + 2,
            stop_margin_blocks=5,
            dataset_size=2,
            status_port=status_port,
            owner=owner,
            bridge_prefix="srfl",
            run_slots=2,
            enhance_timeout_s=8.0,
        )
        v = Daemon("validator", config, tmp_path / "val.log", env={"DOCKER_HOST": docker_host})
        v.start()
        store = net.root / "validators" / "val" / "validator.sqlite"
        try:

            def results() -> dict[str, sqlite3.Row]:
                rows = _rows(store, "SELECT * FROM results WHERE epoch = 0")
                return {r["hotkey"]: r for r in rows}

            await until(
                "the good and the hanging model's results",
                lambda: {hotkeys["good"], hotkeys["hang"]} <= set(results()),
                240,
                v,
            )
            r = results()
            assert r[hotkeys["good"]]["passed"] == 1
            hang = r[hotkeys["hang"]]
            assert (hang["passed"], hang["failed_step"], hang["reason"]) == (
                0,
                "enhance",
                "timeout",
            )
            code, status = _get(status_port, "/status")
            assert code == 200
            reasons = {x["hotkey"]: x["reason"] for x in status["rejections"]}
            assert reasons[hotkeys["liar"]] == "commitment_mismatch"
            assert reasons[hotkeys["silent"]] == "unreachable"
            states = {c["hotkey"]: (c["state"], c["reason"]) for c in status["candidates"]}
            assert states[hotkeys["hang"]] == ("done", "timeout")
            stored = {
                x["hotkey"]: x["reason"]
                for x in _rows(store, "SELECT hotkey, reason FROM rejections WHERE epoch = 0")
            }
            assert stored == reasons

            # The chain goes away (the localnet file disappears) in the middle of the epoch.
            hidden = net.db.path.with_suffix(".hidden")
            os.rename(net.db.path, hidden)
            try:
                code, health = await until(
                    "a stale metagraph task in /healthz",
                    lambda: (
                        (h := _get(status_port, "/healthz"))[0] == 503
                        and "metagraph" in h[1]["stale_tasks"]
                        and h
                    ),
                    60,
                    v,
                )
                assert health["status"] == "degraded"
                # (the localnet's head block comes from the clock, so only reads of the file fail)
                assert health["tasks"]["metagraph"]["state"] == "retrying"
                assert "no localnet" in health["tasks"]["metagraph"]["last_error"]
            finally:
                os.rename(hidden, net.db.path)
            await until("/healthz ok again", lambda: _get(status_port, "/healthz")[0] == 200, 60, v)

            # It catches up: the epoch is judged and weights are set once the chain is back.
            await until(
                "the judgement of epoch 0",
                lambda: _rows(store, "SELECT output FROM judgements WHERE epoch = 0"),
                180,
                v,
            )
            out = json.loads(_rows(store, "SELECT output FROM judgements WHERE epoch = 0")[0][0])
            good_uid = net.db.metagraph(net.netuid).by_hotkey(hotkeys["good"])
            assert good_uid is not None
            assert out["weights"][good_uid.uid] == 1.0
            val_uid = net.db.metagraph(net.netuid).by_hotkey(
                net.wallet("val", stake=5000, validator=True)
            )
            assert val_uid is not None
            await until(
                "weights on chain",
                lambda: net.db.weights(net.netuid).get(val_uid.uid) == {good_uid.uid: 65535},
                60,
                v,
            )
            attempts = _rows(store, "SELECT status FROM weight_attempts WHERE epoch = 0")
            assert "ok" in {a["status"] for a in attempts}
        finally:
            assert v.stop(60) == 0
    finally:
        for gen in servers:
            await gen.aclose()
        silent_sock.close()
