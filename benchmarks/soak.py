"""Soak: the miner's signed server and the validator's status server under steady load.

Each server runs in its own process (``--serve``), built and served as its daemon does
(``runtime.serve_app`` with the daemon's connection guard):

* **miner**: ``miner._http.signed_app`` with ``signed_limits``; the metagraph holds one
  validator with a permit and stake. Requests are btauth/1-signed by ``SignedClient`` (a fresh
  nonce each): ``POST /v3/model`` for the miner's competition (200) and for another one (404,
  what discovery asks), and ``POST /v3/feedback`` (stored, fsync'd, rotated);
* **status**: ``validator._status.status_app`` with ``STATUS_LIMITS`` over the ``full`` store
  of ``tests/dashboard_data.py`` (four candidates, a judgement, weights), with the daemon's
  loop-lag watcher and its tasks ticking: ``/healthz``, ``/status``, ``/metrics`` and the
  dashboard ``/`` in turn.

The load is ``--concurrency`` keep-alive clients in this process on 127.0.0.1, each sending its
next request as soon as the previous answer is in, for ``--seconds`` per server, after a
warm-up. Baselines from the same run: the latency of **one idle client** (sequential requests,
same mix) before the load, and the server's RSS at the first 10% of the load. A leak shows as RSS
that keeps growing after that point (``growth_after_10pct_mb``, ``slope_last_half_mb_per_min``);
a latency problem as p99 under load far above what ``concurrency`` queueing explains, or as p99
drifting up from the first to the last 10% of the run.

    python benchmarks/soak.py [--seconds 60] [--concurrency 16] [--servers miner status]
                              [--json FILE]
    python benchmarks/soak.py --short        # 3 s per server (smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
COMPETITION = "DENOISING_16000HZ"
OTHER_COMPETITION = "DEREVERBERATION_16000HZ"
REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
MINER_URI, VALIDATOR_URI = "//SoakMiner", "//SoakValidator"
SERVERS = ("miner", "status")


# -- the servers (child processes) -------------------------------------------------------------


async def _serve_miner(directory: Path, task_status: Any) -> None:
    from bittensor.sp_core import Keypair

    from soundsright_async.chain.types import Metagraph, Neuron
    from soundsright_async.config import MinerSettings
    from soundsright_async.miner._daemon import signed_limits
    from soundsright_async.miner._http import signed_app
    from soundsright_async.miner._state import MinerState
    from soundsright_async.miner.feedback import FeedbackStore
    from soundsright_async.runtime import serve_app

    miner, validator = Keypair.create_from_uri(MINER_URI), Keypair.create_from_uri(VALIDATOR_URI)
    settings = MinerSettings.model_validate(
        {
            "netuid": 7,
            "data_dir": str(directory),
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout_s": 2.0},
            "model": {"competition": COMPETITION, "namespace": "ns", "name": "m", "revision": REV},
        }
    )
    state = MinerState(
        hotkey=miner.ss58_address,
        competition=COMPETITION,
        namespace="ns",
        name="m",
        revision=REV,
        commitment_wanted="0" * 64,
    )
    neurons = (
        Neuron(0, miner.ss58_address, miner.ss58_address, 0.0, 0.0, False, None),
        Neuron(1, validator.ss58_address, validator.ss58_address, 5e3, 5e3, True, None),
    )
    state.metagraph.update(Metagraph(7, 1, neurons))
    fb = settings.feedback
    store = FeedbackStore(directory, max_file_bytes=fb.max_file_bytes, keep_files=fb.keep_files)
    await serve_app(
        task_status,
        app=signed_app(settings, state, store),
        host="127.0.0.1",
        port=0,
        shutdown_timeout_s=2.0,
        name="http",
        limits=signed_limits(settings),
        on_guard=state.set_http_guard,
    )


async def _serve_status(directory: Path, task_status: Any) -> None:
    import anyio

    sys.path.insert(0, str(ROOT / "tests"))
    import dashboard_data  # type: ignore[import-not-found]

    from soundsright_async.runtime import serve_app, watch_loop_lag
    from soundsright_async.validator._status import STATUS_LIMITS, status_app

    store, state = await dashboard_data.build(directory / "validator.sqlite", "full")

    async def tick() -> None:  # the daemon's tasks report in; /healthz stays "ok"
        while True:
            for name in state.board.tasks:
                state.board.tick(name)
            await anyio.sleep(1.0)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_loop_lag, state.lag)
            tg.start_soon(tick)
            address = await tg.start(
                lambda task_status: serve_app(
                    task_status,
                    app=status_app(state, store),
                    host="127.0.0.1",
                    port=0,
                    shutdown_timeout_s=2.0,
                    name="status",
                    limits=STATUS_LIMITS,
                )
            )
            task_status.started(address)
    finally:
        await store.aclose()


def serve(kind: str, directory: Path) -> None:
    """The child: serve ``kind`` on 127.0.0.1, print ``{"port": N}``, stop when stdin closes."""
    import anyio

    from soundsright_async.logs import configure_logging

    configure_logging("json", "info")  # as the daemons log (stderr)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            serve_one = _serve_miner if kind == "miner" else _serve_status
            _, port = await tg.start(serve_one, directory)
            print(orjson.dumps({"port": port}).decode(), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
            tg.cancel_scope.cancel()

    anyio.run(main)


# -- the load (this process) -------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (``/proc/PID/status`` VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Samples:
    """Per request: start offset (s), latency (s), route; errors by kind."""

    started: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


Call = Callable[[str], Awaitable[int]]
"""Send one request of a route; returns the HTTP status (raises on a transport failure)."""


async def drive(
    call: Call,
    routes: Sequence[tuple[str, int]],
    *,
    concurrency: int,
    seconds: float,
    max_requests: int | None = None,
) -> tuple[Samples, float]:
    """``concurrency`` workers, each cycling through ``routes`` (name, expected status) from its
    own offset, back to back for ``seconds`` (or ``max_requests`` in all). Returns the samples
    and the wall time."""
    samples = Samples()
    t0 = time.perf_counter()
    end = t0 + seconds
    sent = itertools.count()

    async def worker(offset: int) -> None:
        for name, expected in itertools.islice(itertools.cycle(routes), offset, None):
            if time.perf_counter() >= end:
                return
            if max_requests is not None and next(sent) >= max_requests:
                return
            start = time.perf_counter()
            try:
                status = await call(name)
            except Exception as exc:
                samples.errors[f"{name} {type(exc).__name__}"] += 1
                await asyncio.sleep(0.01)
                continue
            if status != expected:
                samples.errors[f"{name} HTTP {status}"] += 1
                continue
            samples.started.append(start - t0)
            samples.latency.append(time.perf_counter() - start)
            samples.route.append(name)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return samples, time.perf_counter() - t0


def _ms(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1e3, 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1e3, 3)


def latency_summary(s: Samples, wall: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requests": len(s.latency),
        "errors": sum(s.errors.values()),
        "requests_per_s": round(len(s.latency) / wall, 1) if wall > 0 else None,
        "p50_ms": _ms(s.latency, 50),
        "p99_ms": _ms(s.latency, 99),
        "max_ms": round(max(s.latency) * 1e3, 3) if s.latency else None,
    }
    if s.errors:
        out["error_kinds"] = dict(s.errors)
    return out


def route_summary(s: Samples, routes: Sequence[tuple[str, int]]) -> dict[str, Any]:
    out = {}
    for name, _ in dict.fromkeys(routes):
        lat = [lat for r, lat in zip(s.route, s.latency, strict=True) if r == name]
        out[name] = {"requests": len(lat), "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99)}
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


async def _sample_rss(pid: int, into: list[tuple[float, float]], t0: float) -> None:
    while True:
        into.append((time.perf_counter() - t0, rss_mb(pid)))
        await asyncio.sleep(0.25)


async def soak(
    call: Call,
    routes: Sequence[tuple[str, int]],
    pid: int,
    *,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    """Warm-up, one idle client (baseline), then the steady load with RSS sampled throughout."""
    warmup_s = min(5.0, max(0.5, seconds * 0.05))
    await drive(call, routes, concurrency=concurrency, seconds=warmup_s)
    idle, idle_wall = await drive(
        call, routes, concurrency=1, seconds=min(5.0, max(1.0, seconds * 0.05)), max_requests=400
    )
    load_before = os.getloadavg()
    rss: list[tuple[float, float]] = []
    cpu0, own0 = cpu_s(pid), time.process_time()
    t0 = time.perf_counter()
    sampler = asyncio.create_task(_sample_rss(pid, rss, t0))
    try:
        load, wall = await drive(call, routes, concurrency=concurrency, seconds=seconds)
    finally:
        sampler.cancel()
    rss.append((time.perf_counter() - t0, rss_mb(pid)))
    server_cpu, client_cpu = cpu_s(pid) - cpu0, time.process_time() - own0
    load_after = os.getloadavg()

    tenth = seconds * 0.1  # windows by when a request was sent (the last answers drain later)
    first = [lat for t, lat in zip(load.started, load.latency, strict=True) if t < tenth]
    last = [lat for t, lat in zip(load.started, load.latency, strict=True) if t >= seconds - tenth]
    rss_start = rss[0][1]
    rss_10 = next(mb for t, mb in rss if t >= tenth)
    rss_end = rss[-1][1]
    half = [(t, mb) for t, mb in rss if t >= seconds / 2]
    slope = (
        statistics.linear_regression([t for t, _ in half], [mb for _, mb in half]).slope * 60
        if len(half) >= 2
        else 0.0
    )
    steady = latency_summary(load, wall)
    idle_doc = latency_summary(idle, idle_wall)
    return {
        "seconds": round(wall, 2),
        "concurrency": concurrency,
        "warmup_s": warmup_s,
        "idle_client": idle_doc,
        "steady": steady,
        "by_route": route_summary(load, routes),
        "idle_by_route": route_summary(idle, routes),
        "server_cpu_share": round(server_cpu / wall, 3),
        "server_cpu_ms_per_request": round(server_cpu * 1e3 / max(1, len(load.latency)), 3),
        "client_cpu_share": round(client_cpu / wall, 3),
        "p99_first_10pct_ms": _ms(first, 99),
        "p99_last_10pct_ms": _ms(last, 99),
        "rss_start_mb": round(rss_start, 1),
        "rss_10pct_mb": round(rss_10, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(max(mb for _, mb in rss), 1),
        "growth_mb": round(rss_end - rss_start, 1),
        "growth_after_10pct_mb": round(rss_end - rss_10, 1),
        "slope_last_half_mb_per_min": round(slope, 2),
        "rss_timeline_mb": [  # (s into the run, MB) at every tenth of it
            (round(t, 1), round(mb, 1))
            for t, mb in (next((x for x in rss if x[0] >= i * tenth), rss[-1]) for i in range(11))
        ],
        "p99_steady_over_idle": _ratio(steady["p99_ms"], idle_doc["p99_ms"]),
        "p50_steady_over_idle": _ratio(steady["p50_ms"], idle_doc["p50_ms"]),
        "p99_last_over_first_10pct": _ratio(_ms(last, 99), _ms(first, 99)),
        "load_average": {"before": load_before, "after": load_after},
    }


def miner_client(port: int, concurrency: int) -> tuple[Any, Call, list[tuple[str, int]]]:
    from bittensor.sp_core import Keypair

    from soundsright_async.net import SignedClient
    from soundsright_async.protocol import (
        FEEDBACK_PATH,
        MODEL_PATH,
        FeedbackRequest,
        MetricStats,
        MinerResult,
        ModelRequest,
        encode_message,
    )

    miner, validator = Keypair.create_from_uri(MINER_URI), Keypair.create_from_uri(VALIDATOR_URI)
    client = SignedClient(validator, concurrency=concurrency, deadline_s=30.0)
    feedback = FeedbackRequest(
        competition=COMPETITION,
        epoch=7,
        seed=1,
        result=MinerResult(
            hotkey=miner.ss58_address,
            hf_model_namespace="ns",
            hf_model_name="m",
            hf_model_revision=REV,
            valid=True,
            metrics={"PESQ": MetricStats(mean=2.5), "ESTOI": MetricStats(mean=0.8)},
        ),
        winners={},
    )
    bodies = {
        "model": (MODEL_PATH, encode_message(ModelRequest(competition=COMPETITION))),
        "model_other": (MODEL_PATH, encode_message(ModelRequest(competition=OTHER_COMPETITION))),
        "feedback": (FEEDBACK_PATH, encode_message(feedback)),
    }
    endpoint = f"127.0.0.1:{port}"

    async def call(route: str) -> int:
        path, body = bodies[route]
        resp = await client.post(endpoint, path, body, receiver=miner.ss58_address)
        return resp.status

    # Mostly discovery traffic; Feedback (an fsync each) 1 in 10.
    routes = [("model", 200)] * 8 + [("model_other", 404), ("feedback", 200)]
    return client, call, routes


def status_client(port: int, concurrency: int) -> tuple[Any, Call, list[tuple[str, int]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    base = f"http://127.0.0.1:{port}"
    paths = {"healthz": "/healthz", "status": "/status", "metrics": "/metrics", "dashboard": "/"}

    async def call(route: str) -> int:
        async with session.get(base + paths[route]) as resp:
            await resp.read()
            return resp.status

    return session, call, [(name, 200) for name in paths]


async def _soak_server(
    kind: str, port: int, pid: int, *, seconds: float, concurrency: int
) -> dict[str, Any]:
    make = miner_client if kind == "miner" else status_client
    client, call, routes = make(port, concurrency)
    try:
        return await soak(call, routes, pid, seconds=seconds, concurrency=concurrency)
    finally:
        await (client.aclose() if kind == "miner" else client.close())


def run_server(kind: str, *, seconds: float, concurrency: int) -> dict[str, Any]:
    """Start the ``kind`` server in its own process, soak it, stop it."""
    with tempfile.TemporaryDirectory(prefix=f"soak-{kind}-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--dir", tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {kind} server did not start (exit {proc.wait()})")
            port = int(orjson.loads(line)["port"])
            result = asyncio.run(
                _soak_server(kind, port, proc.pid, seconds=seconds, concurrency=concurrency)
            )
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        result["exit_code"] = proc.returncode
        return result


def run(
    servers: Sequence[str] = SERVERS, *, seconds: float = 60.0, concurrency: int = 16
) -> dict[str, Any]:
    return {
        "benchmark": "soak",
        "cpus": os.cpu_count(),
        "servers": {
            kind: run_server(kind, seconds=seconds, concurrency=concurrency) for kind in servers
        },
    }


def table(result: dict[str, Any]) -> str:
    head = (
        "server", "req/s", "p50 ms", "p99 ms", "idle p99", "p99 x idle", "p99 last/first",
        "errors", "srv CPU", "CPU ms/req", "RSS start", "RSS 10%", "RSS end", "growth",
        "after 10%", "MB/min", "load",
    )  # fmt: skip
    rows = [head]
    for kind, r in result["servers"].items():
        s, idle = r["steady"], r["idle_client"]
        cells = (
            (s["requests_per_s"], ".0f"),
            (s["p50_ms"], ".2f"),
            (s["p99_ms"], ".2f"),
            (idle["p99_ms"], ".2f"),
            (r["p99_steady_over_idle"], ""),
            (r["p99_last_over_first_10pct"], ""),
            (s["errors"] + idle["errors"], "d"),
            (r["server_cpu_share"], ".2f"),
            (r["server_cpu_ms_per_request"], ".3f"),
            (r["rss_start_mb"], ".1f"),
            (r["rss_10pct_mb"], ".1f"),
            (r["rss_end_mb"], ".1f"),
            (r["growth_mb"], "+.1f"),
            (r["growth_after_10pct_mb"], "+.1f"),
            (r["slope_last_half_mb_per_min"], "+.2f"),
        )
        load = "/".join(f"{x:.1f}" for x in r["load_average"]["after"])
        rows.append((kind, *("-" if v is None else format(v, f) for v, f in cells), load))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="steady load per server")
    ap.add_argument("--concurrency", type=int, default=16, help="keep-alive clients")
    ap.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    ap.add_argument("--short", action="store_true", help="3 s per server (smoke run)")
    ap.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    ap.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.dir)
        return
    seconds = 3.0 if args.short else args.seconds
    result = run(args.servers, seconds=seconds, concurrency=args.concurrency)
    print(table(result))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
