"""Discovery over many miners on loopback, some of them silent: one pass vs one call deadline.

256 neurons (by default) with endpoints on 127.0.0.1: 80% answer ``POST /v3/model`` at once, 20%
accept the connection and never answer. The validator's discovery pass (``validator._discovery``,
the code the daemon runs) asks every neuron for every competition it runs, each call under the
total deadline ``--deadline``. Printed: the pass's wall time as a multiple of the deadline (goal:
at most 1.2) and the time the same calls take back to back (the reference queried one neuron after
another: the sum of the per-call times), measured in the same run.

    python benchmarks/discovery.py [--neurons 256] [--silent 0.2] [--deadline 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import orjson
from aiohttp import web

from soundsright_async.chain.fake import FakeNetwork
from soundsright_async.competitions import COMPETITIONS
from soundsright_async.net import SignedClient
from soundsright_async.protocol import (
    MODEL_PATH,
    ModelRequest,
    ModelResponse,
    commitment_hash,
    commitment_payload,
    decode_message,
    encode_message,
)
from soundsright_async.validator._context import Services
from soundsright_async.validator._discovery import discover
from soundsright_async.validator._epochs import EpochClock
from soundsright_async.validator._state import ValidatorState
from soundsright_async.validator._store import Store
from soundsright_async.validator.settings import ValidatorSettings
from soundsright_async.wallet import create_wallet, load_hotkey

REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"


def _competition_of(hotkey: str) -> str:
    """Miners are spread over the four competitions (``miner-0007`` serves the fourth)."""
    return COMPETITIONS[int(hotkey.rsplit("-", 1)[-1] or 0) % len(COMPETITIONS)].name


def _serve_honest(conn: Any) -> None:
    """The honest miners' endpoint, in a process of its own (miners are other machines)."""

    async def serve() -> None:
        _runner, port = await _honest_server()
        conn.send(port)
        await asyncio.Event().wait()

    asyncio.run(serve())


async def _honest_server() -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        req = decode_message(ModelRequest, await request.read())
        if req.competition != _competition_of(request.headers.get("X-Bittensor-Receiver", "")):
            return web.Response(status=404)
        resp = ModelResponse(
            competition=req.competition,
            hf_model_namespace="ns",
            hf_model_name="m",
            hf_model_revision=REV,
        )
        return web.Response(body=encode_message(resp), content_type="application/json")

    app = web.Application()
    app.router.add_post(MODEL_PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    return runner, int(runner.addresses[0][1])


def _silent_listener() -> tuple[socket.socket, int]:
    """Accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s, int(s.getsockname()[1])


async def run(neurons: int, silent_share: float, deadline: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sr-discovery-"))
    create_wallet("val", "default", tmp / "wallets")
    hotkey = load_hotkey("val", "default", tmp / "wallets")
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve_honest, args=(child,), daemon=True)
    server.start()
    honest_port = int(parent.recv())
    listener, silent_port = _silent_listener()
    net = FakeNetwork(netuid=7, block=1000)
    net.register(hotkey.ss58_address, stake=1e4, validator=True)
    silent = int(neurons * silent_share)
    for i in range(neurons):
        hk = f"miner-{i:04d}"
        uid = net.register(hk)
        port = silent_port if i < silent else honest_port
        net.neurons[uid] = replace(net.neurons[uid], endpoint=f"127.0.0.1:{port}")
        digest = commitment_hash(
            namespace="ns", name="m", revision=REV, hotkey=hk, competition=_competition_of(hk)
        )
        net.commitments[hk] = (commitment_payload(digest), 10)
    settings = ValidatorSettings.model_validate(
        {
            "data_dir": str(tmp),
            "competition": {"competitions": [c.name for c in COMPETITIONS]},
            "discovery": {"call_timeout_s": deadline, "concurrency": 256},
        }
    )
    store = await Store(tmp / "v.sqlite").open()
    state = ValidatorState(
        hotkey=hotkey.ss58_address,
        clock=EpochClock(1000, 0),
        competitions=tuple(settings.competition.competitions),
    )
    chain = net.chain(hotkey.ss58_address)
    state.metagraph = await chain.metagraph()
    state.epoch = await store.record_epoch(
        1, start_block=1000, end_block=2000, start_hash="0x1", seed=1
    )
    client = SignedClient(hotkey, concurrency=1024, deadline_s=deadline)
    durations: list[float] = []
    post = client.post

    async def timed_post(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return await post(*args, **kw)
        finally:
            durations.append(time.perf_counter() - t)

    client.post = timed_post  # type: ignore[method-assign]
    svc = Services(
        settings=settings,
        secrets=cast(Any, None),
        hotkey=hotkey,
        chain=chain,
        store=store,
        state=state,
        client=client,
        pool=cast(Any, None),
        runner=cast(Any, None),
        models=cast(Any, None),
        judge_requests=cast(Any, None),
    )
    try:
        started = time.perf_counter()
        outcome = await discover(svc)
        elapsed = time.perf_counter() - started
        rejected = await store.rejections(1)
    finally:
        await client.aclose()
        await store.aclose()
        server.terminate()
        server.join()
        listener.close()
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    sequential = sum(durations)
    return {
        "benchmark": "discovery",
        "neurons": neurons,
        "silent": silent,
        "competitions": len(settings.competition.competitions),
        "calls": len(durations),
        "deadline_s": deadline,
        "pass_s": round(elapsed, 3),
        "pass_over_deadline": round(elapsed / deadline, 3),
        "goal_pass_over_deadline": 1.2,
        "sequential_s": round(sequential, 3),
        "speedup_vs_sequential": round(sequential / elapsed, 1),
        "accepted": outcome.accepted,
        "rejected": reasons,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--neurons", type=int, default=256)
    p.add_argument("--silent", type=float, default=0.2)
    p.add_argument("--deadline", type=float, default=2.0)
    a = p.parse_args()
    from soundsright_async.logs import configure_logging

    configure_logging("console", "warning")
    logging.getLogger().setLevel(logging.WARNING)
    print(orjson.dumps(asyncio.run(run(a.neurons, a.silent, a.deadline))).decode())


if __name__ == "__main__":
    main()
