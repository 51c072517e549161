"""Event-loop lag of the validator daemon while it benchmarks and scores models.

A real local competition: a localnet with 1 s blocks, three miner daemons with the example models
(a local git hub), the validator as a process with real Podman containers. The validator measures
its own loop lag (``runtime.watch_loop_lag``: how late a 250 ms sleep wakes up) and reports it in
``/healthz``; this script reads it every second. The baseline is the same daemon in the same run
while it is idle (before the epoch starts); the busy figure covers dataset generation, builds,
runs and scoring. Goal: p99 under 20 ms while busy.

    python benchmarks/validator_epoch.py [--miners 3] [--files 4]

Needs Podman (``eval "$(scripts/podman.sh)"``) and the base image (``make base-image``).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from soundsright_async.demo import Daemon, LocalNetwork, free_port

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["spectral-gate", "passthrough", "dereverb"]


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except OSError as exc:
        body = getattr(exc, "read", None)
        return json.loads(body()) if body else None


def _results(store: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def run(miners: int, files: int, idle_s: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="sr-bench-epoch-"))
    net = LocalNetwork(root, block_time=1.0)
    net.wallet("val", stake=5000, validator=True)
    specs = [
        net.add_miner(
            f"m{i}", ROOT / "examples/models" / MODELS[i % len(MODELS)], "DENOISING_16000HZ"
        )
        for i in range(miners)
    ]
    procs = [Daemon("miner", net.miner_config(m), root / f"{m.name}.log").start() for m in specs]
    try:
        while len(net.db.commitments(net.netuid)) < miners:
            time.sleep(0.5)
        port = free_port()
        start_in = int(idle_s) + 20  # the daemon starts, then idles until the epoch
        anchor = net.db.head().number + start_in
        config = net.validator_config(
            "val",
            competitions=["DENOISING_16000HZ"],
            epoch_blocks=600,
            anchor_block=anchor,
            stop_margin_blocks=10,
            dataset_size=files,
            status_port=port,
            owner=f"bench-epoch-{os.getpid()}",
            bridge_prefix="srbe",
            run_slots=1,
        )
        v = Daemon("validator", config, root / "val.log").start()
        procs.append(v)
        idle: list[float] = []
        busy: list[float] = []
        store = root / "validators" / "val" / "validator.sqlite"
        t0 = time.monotonic()
        seen = 0
        while time.monotonic() - t0 < start_in + 600:
            time.sleep(0.25)  # the daemon samples its lag every 250 ms
            h = _health(port)
            if not h or not h.get("ready"):
                continue
            (busy if net.db.head().number >= anchor else idle).append(h["loop_lag"]["last_s"])
            seen += 1
            if seen % 20 == 0 and _results(store) >= miners:
                break
        final = _health(port) or {}
        return {
            "benchmark": "validator_epoch",
            "miners": miners,
            "files": files,
            "idle_samples": len(idle),
            "busy_samples": len(busy),
            "idle_p99_ms": round(1000 * _p99(idle), 2),
            "busy_p99_ms": round(1000 * _p99(busy), 2),
            "busy_max_ms": round(1000 * max(busy, default=0.0), 2),
            "busy_over_idle_p99": round(_p99(busy) / max(_p99(idle), 1e-6), 2),
            "daemon_p99_ms_last_600_samples": round(
                1000 * final.get("loop_lag", {}).get("p99_s", 0.0), 2
            ),
            "goal_busy_p99_ms": 20.0,
            "results": _results(store),
        }
    finally:
        for p in reversed(procs):
            p.stop(30)


def _p99(xs: list[float]) -> float:
    if not xs:
        return 0.0
    if len(xs) < 2:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[98]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--miners", type=int, default=3)
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--idle", type=float, default=15.0, help="seconds of idle baseline")
    a = p.parse_args()
    print(json.dumps(run(a.miners, a.files, a.idle)))


if __name__ == "__main__":
    main()
