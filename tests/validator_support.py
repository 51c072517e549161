"""Helpers for the validator's end-to-end fault tests: store and log reads, polling with a
deadline, the engine's leftovers by owner label, in-process fake miners that commit on the
localnet, and validator processes that import this checkout's code."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from soundsright_async.chain.localnet import LocalnetChain
from soundsright_async.demo import Daemon, LocalNetwork
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
EXAMPLES = ROOT / "examples" / "models"
COMP = "DENOISING_16000HZ"


def rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    """A read-only query of the validator's store ([] before it exists)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return []
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def events(log: Path, name: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon (only ``name`` events when given)."""
    out: list[dict[str, Any]] = []
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if name is None or doc.get("event") == name:
            out.append(doc)
    return out


async def until(
    what: str, check: Callable[[], Any], limit_s: float, *procs: Daemon, poll_s: float = 0.5
) -> Any:
    """Poll ``check`` until it returns something truthy; fail when a process exits or time is up."""
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        for p in procs:
            if not p.running():
                raise AssertionError(
                    f"{p.config.name} exited while waiting for {what}:\n" + p.log_text()[-3000:]
                )
        if time.monotonic() > deadline:
            tails = "\n".join(p.log_text()[-2000:] for p in procs)
            raise AssertionError(f"timed out after {limit_s:g}s waiting for {what}\n{tails}")
        await asyncio.sleep(poll_s)


def labelled(kind: str, owner: str, *, running: bool = False) -> list[str]:
    """Ids of the engine's containers / networks / images with ``soundsright.owner=owner``."""
    env = dict(os.environ, CONTAINERS_CONF=f"/tmp/soundsright-podman-{os.getuid()}/containers.conf")
    cmd = ["podman", kind, "ls", "-q", "--filter", f"label=soundsright.owner={owner}"]
    if kind == "container" and not running:
        cmd.insert(3, "-a")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def validator(config: Path, log: Path, docker_host: str) -> Daemon:
    """A validator process that runs this checkout's code (not whatever the venv installed)."""
    env = {"DOCKER_HOST": docker_host, "PYTHONPATH": str(ROOT)}
    return Daemon("validator", config, log, env=env)


@asynccontextmanager
async def fake_miners(
    net: LocalNetwork, models: dict[str, tuple[Path, dict[str, bytes] | None]]
) -> AsyncIterator[dict[str, str]]:
    """One in-process miner endpoint per ``name -> (model dir, extra files)``: the model is
    published to the git hub, committed on chain and the endpoint served; yields name -> hotkey.
    Feedback is accepted and dropped."""
    runners: list[web.AppRunner] = []
    hotkeys: dict[str, str] = {}
    try:
        for name, (src, extra) in models.items():
            hotkeys[name] = net.wallet(name)
            rev = net.publish(src, f"{name}/{src.name}", extra=extra)
            answer = ModelResponse(
                competition=COMP,
                hf_model_namespace=name,
                hf_model_name=src.name,
                hf_model_revision=rev,
            )

            async def model(request: web.Request, answer: ModelResponse = answer) -> web.Response:
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
            runners.append(runner)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = int(runner.addresses[0][1])
            key = load_hotkey(name, "default", net.wallets)
            async with LocalnetChain(net.db.path, netuid=net.netuid, hotkey=key) as chain:
                digest = commitment_hash(
                    namespace=name,
                    name=src.name,
                    revision=rev,
                    hotkey=hotkeys[name],
                    competition=COMP,
                )
                assert (await chain.commit(commitment_payload(digest))).ok
                assert (await chain.serve("127.0.0.1", port)).ok
        yield hotkeys
    finally:
        for runner in runners:
            await runner.cleanup()


def uid_of(net: LocalNetwork, hotkey: str) -> int:
    n = net.db.metagraph(net.netuid).by_hotkey(hotkey)
    assert n is not None
    return n.uid
