"""Benchmark: the same models on two container engines vs one (issue 13.2; goal >= 1.7x).

    .venv/bin/python benchmarks/multi_engine.py [--models 4] [--sleep 90] [--builds 2]

Real Podman: engine ``one`` is the project's service (``make podman``); engine ``two`` a second
``podman system service`` this script starts on its own socket (same storage; stopped at the
end). Each model is the passthrough example whose ``/enhance/`` sleeps ``--sleep`` s (a GPU
model's enhance step dominating, as on a validator), each with its own id file so no build is
shared. Both phases use one ``BenchmarkRunner`` with ``--builds`` concurrent builds and one run
slot per engine, on a 2-file DENOISING_16000HZ set:

* one engine: ``benchmark_many`` over ``--models`` models on ``one``;
* two engines: ``benchmark_many`` over as many fresh models on ``one`` and ``two``.

Prints one JSON object: both wall times, ``one / two`` (the speed-up), where each model ran,
and the machine's load average at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from pipeline import _engine_url, _repo  # benchmarks/ is on sys.path when run as a script

from soundsright_async.audio.dataset import DatasetSpec, generate_dataset
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import get_competition
from soundsright_async.logs import configure_logging
from soundsright_async.sandbox import RepoLimits, inspect_repo
from soundsright_async.sandbox.client import StepTimeouts
from soundsright_async.sandbox.engine import BridgeFirewall, DockerEngine
from soundsright_async.sandbox.runner import (
    BenchmarkRunner,
    DatasetDirs,
    ModelUnderTest,
    RunnerConfig,
)

ROOT = Path(__file__).resolve().parents[1]
COMPETITION = get_competition("DENOISING_16000HZ")
LIMITS = RepoLimits(max_total_bytes=10**8, max_files=1000, max_file_bytes=10**8)
OWNER = f"bench-engines-{os.getpid()}"
PREFIX = "srbe"
SECOND = f"/tmp/soundsright-podman-bench-{os.getpid()}"


def _second_service(*args: str) -> str:
    env = dict(os.environ, SOUNDSRIGHT_PODMAN_DIR=SECOND)
    env.pop("DOCKER_HOST", None)
    out = subprocess.run(
        [str(ROOT / "scripts/podman.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return out.stdout.strip().removeprefix("export DOCKER_HOST=")


def _engine(url: str, name: str) -> DockerEngine:
    return DockerEngine(
        url=url,
        owner=OWNER,
        name=name,
        bridge_prefix=PREFIX,
        firewall=BridgeFirewall(PREFIX) if os.geteuid() == 0 else None,
    )


async def _models(root: Path, prefix: str, n: int, sleep_s: float) -> list[ModelUnderTest]:
    out = []
    for i in range(n):
        repo = _repo(root, f"{prefix}{i}", sleep_s)
        digest = await inspect_repo(repo, LIMITS)
        out.append(
            ModelUnderTest(f"{prefix}{i}", repo, digest.content_hash, COMPETITION, f"{prefix}{i}")
        )
    return out


async def _phase(
    engines: list[DockerEngine],
    pool: ScoringPool,
    work: Path,
    models: list[ModelUnderTest],
    ds: DatasetDirs,
    builds: int,
    sleep_s: float,
) -> tuple[float, list[str]]:
    runner = BenchmarkRunner(
        engines=[(e, [None]) for e in engines],
        pool=pool,
        work_dir=work,
        config=RunnerConfig(
            build_timeout_s=900,
            max_concurrent_builds=builds,
            timeouts=StepTimeouts(status=120, enhance=sleep_s + 120),
            owner=OWNER,
        ),
    )
    start = time.monotonic()
    results = await runner.benchmark_many(models, ds)
    wall = time.monotonic() - start
    for r in results:
        if not r.passed:
            raise SystemExit(f"model {r.model} failed: {orjson.dumps(r.to_dict()).decode()}")
    return wall, [r.engine for r in results]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()
    second = _second_service()
    try:
        with tempfile.TemporaryDirectory(prefix="sr-bench-engines-") as tmp:
            root = Path(tmp)
            ds = DatasetDirs.of(
                await generate_dataset(
                    DatasetSpec(COMPETITION, count=2, seed=7, out=root / "ds", sentences=1)
                )
            )
            single = await _models(root, "single", args.models, args.sleep)
            double = await _models(root, "double", args.models, args.sleep)
            async with (
                ScoringPool(workers=2) as pool,
                _engine(_engine_url(), "one") as one,
                _engine(second, "two") as two,
            ):
                wall_1, where_1 = await _phase(
                    [one], pool, root / "w1", single, ds, args.builds, args.sleep
                )
                wall_2, where_2 = await _phase(
                    [one, two], pool, root / "w2", double, ds, args.builds, args.sleep
                )
    finally:
        _second_service("--stop")
    return {
        "benchmark": "multi_engine",
        "models": args.models,
        "enhance_sleep_s": args.sleep,
        "concurrent_builds": args.builds,
        "one_engine_s": round(wall_1, 1),
        "two_engines_s": round(wall_2, 1),
        "speedup": round(wall_1 / wall_2, 2),
        "goal": 1.7,
        "engines_used": {"one": where_1, "two": where_2},
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=90.0)
    parser.add_argument("--builds", type=int, default=2)
    configure_logging("json", "warning", stream=sys.stderr)
    report = asyncio.run(main(parser.parse_args()))
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
