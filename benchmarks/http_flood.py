"""The miner's signed server under a connection flood, on loopback (issue 15's acceptance run).

A real miner process (``python -m soundsright_async.miner``) is started with ``RLIMIT_NOFILE``
held to ``--nofile`` (1024, the default soft limit when the unit sets no ``LimitNOFILE``) against
a localnet file where one validator has a permit and stake. Then, at the same time:

* ``--connections`` unsigned connections trickle header lines (one every ``--trickle-s``); each
  that the server closes is reopened at once (what an attacker does);
* once a second the validator sends a signed ``POST /v3/model`` and ``/healthz`` is fetched
  (latency and failures recorded);
* one signed request from the validator sends its body one byte every 2 s (must be cut by the
  body deadline).

Measured: the validator's and health latencies, how long the trickled body lived, the miner's
log size, and its RSS at start, at the peak and after the flood. Prints JSON.

    python benchmarks/http_flood.py [--connections 1100] [--seconds 25] [--nofile 1024]

``FLOOD_VALIDATOR_IP=127.0.0.1`` puts the validator on the flood's own address (then only the
eviction of the oldest pending connection lets it in: see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from bittensor import http_auth as ha

from soundsright_async.chain._localnet_db import LocalnetDB
from soundsright_async.net import SignedClient
from soundsright_async.protocol import MODEL_PATH, ModelRequest, ModelResponse, encode_message
from soundsright_async.wallet import Hotkey, create_wallet, load_hotkey

ROOT = Path(__file__).resolve().parent.parent
NETUID = 7
REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
VALIDATOR_IP = os.environ.get("FLOOD_VALIDATOR_IP", "127.0.0.2")
"""The validator connects from another loopback address than the flood (127.0.0.1)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Setup:
    config: Path
    log: Path
    miner_ss58: str
    validator: Hotkey
    port: int
    health_port: int


def make_setup(tmp: Path, *, extra_server: str = "") -> Setup:
    wallets = tmp / "wallets"
    db = LocalnetDB(tmp / "localnet.sqlite")
    db.init(netuid=NETUID, block_time=0.5)
    keys = {}
    for name, stake, permit in (("miner", 0.0, False), ("validator", 5000.0, True)):
        info = create_wallet(name, "default", wallets)
        db.register(NETUID, info.hotkey_ss58, info.coldkey_ss58, stake=stake, validator=permit)
        keys[name] = load_hotkey(name, "default", wallets)
    port, health_port = _free_port(), _free_port()
    config = tmp / "miner.toml"
    config.write_text(
        f"""netuid = {NETUID}
data_dir = "{tmp / "data"}"

[chain]
network = "localnet"
localnet_path = "{db.path}"
min_validator_stake = 1000.0

[wallet]
name = "miner"
hotkey = "default"
path = "{wallets}"

[logging]
format = "json"
level = "info"

[server]
host = "127.0.0.1"
port = {port}
shutdown_timeout_s = 2.0
{extra_server}
[health]
port = {health_port}

[upkeep]
metagraph_interval_s = 2.0
commitment_interval_s = 5.0
endpoint_interval_s = 5.0

[model]
competition = "DENOISING_16000HZ"
namespace = "ns"
name = "enhancer"
revision = "{REV}"
"""
    )
    return Setup(
        config, tmp / "miner.log", keys["miner"].ss58_address, keys["validator"], port, health_port
    )


def start_miner(setup: Setup, *, nofile: int) -> subprocess.Popen[bytes]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = setup.log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "soundsright_async.miner", "--config", str(setup.config)],
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env=env,
            preexec_fn=limit,
        )
    finally:
        log.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def signed_model(setup: Setup, timeout_s: float) -> float:
    """Seconds for one signed ``/v3/model`` round trip on a new connection (raises on failure)."""
    t0 = time.monotonic()
    async with SignedClient(setup.validator, local_addr=(VALIDATOR_IP, 0)) as client:
        answer = await client.call(
            f"127.0.0.1:{setup.port}",
            MODEL_PATH,
            ModelRequest(competition="DENOISING_16000HZ"),
            ModelResponse,
            receiver=setup.miner_ss58,
            deadline_s=timeout_s,
        )
    if answer is None or answer.hf_model_revision != REV:
        raise RuntimeError(f"unexpected answer {answer!r}")
    return time.monotonic() - t0


async def health(setup: Setup, timeout_s: float) -> float:
    """Seconds for one ``GET /healthz`` on a new connection (raises on failure)."""
    t0 = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{setup.health_port}/healthz",
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp,
    ):
        await resp.read()
    return time.monotonic() - t0


async def wait_ready(setup: Setup, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            await signed_model(setup, 2.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _trickler(
    port: int, stop: asyncio.Event, trickle_s: float, stats: dict[str, int]
) -> None:
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            stats["opened"] += 1
            writer.write(b"POST /v3/model HTTP/1.1\r\nHost: miner\r\n")
            i = 0
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(trickle_s):
                        if await reader.read(1024) == b"":
                            break  # the server closed it
                        continue
                writer.write(f"X-Pad-{i}: {'a' * 32}\r\n".encode())
                await writer.drain()
                i += 1
        except OSError:
            stats["errors"] += 1
            await asyncio.sleep(0.1)
        finally:
            if writer is not None:
                writer.close()
        stats["closed_by_server"] += 0 if stop.is_set() else 1


async def _trickled_body(setup: Setup, stop: asyncio.Event) -> float | None:
    """Seconds a signed request trickling its body (1 byte / 2 s) stayed open; None if never cut."""
    body = encode_message(ModelRequest(competition="DENOISING_16000HZ")) + b" " * 200
    headers = ha.sign(
        setup.validator,  # type: ignore[arg-type]
        method="POST",
        path=MODEL_PATH,
        body=body,
        receiver_ss58=setup.miner_ss58,
    )
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", setup.port, local_addr=(VALIDATOR_IP, 0)
    )
    t0 = time.monotonic()
    writer.write(
        (
            f"POST {MODEL_PATH} HTTP/1.1\r\nHost: miner\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n"
        ).encode()
    )
    try:
        for b in body:
            if stop.is_set():
                return None
            writer.write(bytes([b]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    if await reader.read(1024) == b"":
                        return time.monotonic() - t0
        return None
    except OSError:
        return time.monotonic() - t0
    finally:
        writer.close()


async def flood(
    setup: Setup, pid: int, *, connections: int, seconds: float, trickle_s: float
) -> dict[str, Any]:
    await wait_ready(setup)
    for _ in range(5):
        await signed_model(setup, 3.0)
        await health(setup, 3.0)
    await asyncio.sleep(1.0)
    rss_start = rss_mb(pid)
    log_start = setup.log.stat().st_size
    stop = asyncio.Event()
    stats = {"opened": 0, "errors": 0, "closed_by_server": 0}
    tricklers = [
        asyncio.create_task(_trickler(setup.port, stop, trickle_s, stats))
        for _ in range(connections)
    ]
    body_task = asyncio.create_task(_trickled_body(setup, stop))
    signed: list[float] = []
    healthz: list[float] = []
    failures = {"signed": 0, "health": 0}
    rss_peak = rss_start
    t_end = time.monotonic() + seconds
    await asyncio.sleep(2.0)  # the flood is established
    while time.monotonic() < t_end:
        try:
            signed.append(await signed_model(setup, 3.0))
        except Exception:
            failures["signed"] += 1
        try:
            healthz.append(await health(setup, 3.0))
        except Exception:
            failures["health"] += 1
        rss_peak = max(rss_peak, rss_mb(pid))
        await asyncio.sleep(1.0)
    body_cut_s = await body_task if body_task.done() else None
    stop.set()
    body_task.cancel()
    await asyncio.gather(*tricklers, body_task, return_exceptions=True)
    await asyncio.sleep(3.0)  # the server sees the closes
    signed_after = await signed_model(setup, 3.0)
    await asyncio.sleep(1.0)
    rss_end = rss_mb(pid)
    return {
        "connections": connections,
        "seconds": seconds,
        "flood": stats,
        "signed_ok": len(signed),
        "signed_failed": failures["signed"],
        "signed_p50_s": round(statistics.median(signed), 4) if signed else None,
        "signed_max_s": round(max(signed), 4) if signed else None,
        "signed_after_s": round(signed_after, 4),
        "health_ok": len(healthz),
        "health_failed": failures["health"],
        "health_max_s": round(max(healthz), 4) if healthz else None,
        "trickled_body_cut_after_s": None if body_cut_s is None else round(body_cut_s, 1),
        "log_growth_bytes": setup.log.stat().st_size - log_start,
        "rss_start_mb": round(rss_start, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "rss_end_mb": round(rss_end, 1),
    }


def run(
    tmp: Path, *, connections: int, seconds: float, nofile: int, trickle_s: float
) -> dict[str, Any]:
    setup = make_setup(tmp)
    proc = start_miner(setup, nofile=nofile)
    try:
        result = asyncio.run(
            flood(setup, proc.pid, connections=connections, seconds=seconds, trickle_s=trickle_s)
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    result["nofile"] = nofile
    result["exit_code"] = proc.returncode
    return result


async def _flood_only(port: int, connections: int, trickle_s: float) -> dict[str, int]:
    """The flooding side (run in its own process): until a line arrives on stdin."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, connections + 256)), hard))
    stop = asyncio.Event()
    stats = {"opened": 0, "errors": 0, "closed_by_server": 0}
    tasks = [
        asyncio.create_task(_trickler(port, stop, trickle_s, stats)) for _ in range(connections)
    ]
    await asyncio.to_thread(sys.stdin.readline)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1100)
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--trickle-s", type=float, default=1.0)
    ap.add_argument("--flood-port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.flood_port:
        stats = asyncio.run(_flood_only(args.flood_port, args.connections, args.trickle_s))
        print(orjson.dumps(stats).decode())
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            Path(tmp),
            connections=args.connections,
            seconds=args.seconds,
            nofile=args.nofile,
            trickle_s=args.trickle_s,
        )
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
