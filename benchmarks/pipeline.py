"""Benchmark pipeline: builds, runs and scoring overlapped vs one model after another.

    .venv/bin/python benchmarks/pipeline.py [--models 6] [--slots 2] [--sleep 5] [--builds 2]

Real Podman containers (``DOCKER_HOST``, else the socket of ``make podman``): ``--models`` tiny
model repos made in a temp dir (the passthrough example, each with its own id file so no build is
cached, whose ``/enhance/`` sleeps ``--sleep`` s), built ``FROM localhost/soundsright-base:latest``
and benchmarked on a 2-file generated DENOISING_16000HZ set (PESQ + ESTOI) by one
``BenchmarkRunner`` with ``--slots`` run slots and ``--builds`` concurrent builds:

* pipelined: ``benchmark_many`` over all models (builds, runs and scoring overlap);
* sequential: the same number of fresh models, one ``benchmark`` after the other.

The ideal overlap is the makespan of a zero-overhead schedule of the **sequential** run's own
phase times (uncontended): each model's build (at most ``--builds`` at once, in order), then its
slot phase (container start to container removed) on the first free slot, then its scoring.
Prints one JSON object: wall times, the ideal, ``pipelined / ideal`` (target <= 1.3) and
``sequential / pipelined``, peak concurrent builds and containers, per-model phase times.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from soundsright_async.audio.dataset import DatasetSpec, generate_dataset
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import get_competition
from soundsright_async.logs import configure_logging
from soundsright_async.sandbox import RepoLimits, inspect_repo
from soundsright_async.sandbox.client import StepTimeouts
from soundsright_async.sandbox.engine import (
    BridgeFirewall,
    BuildRequest,
    BuiltImage,
    ContainerState,
    DockerEngine,
    RunningModel,
    RunRequest,
    SweepReport,
    default_engine_url,
)
from soundsright_async.sandbox.runner import (
    BenchmarkResult,
    BenchmarkRunner,
    DatasetDirs,
    ModelUnderTest,
    RunnerConfig,
)

ROOT = Path(__file__).resolve().parents[1]
PASSTHROUGH = ROOT / "examples/models/passthrough"
COMPETITION = get_competition("DENOISING_16000HZ")
LIMITS = RepoLimits(max_total_bytes=10**8, max_files=1000, max_file_bytes=10**8)


@dataclass
class TimedEngine:
    """Delegates to the real engine and records when each build and container lived."""

    inner: DockerEngine
    t0: float = field(default_factory=time.monotonic)
    builds: dict[str, tuple[float, float]] = field(default_factory=dict)
    slots: dict[str, list[float]] = field(default_factory=dict)  # image -> [start, removed]
    _by_container: dict[str, str] = field(default_factory=dict)
    _live: dict[str, int] = field(default_factory=lambda: {"build": 0, "run": 0})
    peak: dict[str, int] = field(default_factory=lambda: {"build": 0, "run": 0})

    def _enter(self, kind: str) -> None:
        self._live[kind] += 1
        self.peak[kind] = max(self.peak[kind], self._live[kind])

    @property
    def name(self) -> str:
        return self.inner.name

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def build(self, request: BuildRequest) -> BuiltImage:
        start = time.monotonic()
        self._enter("build")
        try:
            built = await self.inner.build(request)
        finally:
            self._live["build"] -= 1
        self.builds[built.image_id] = (start - self.t0, time.monotonic() - self.t0)
        return built

    async def start(self, request: RunRequest) -> RunningModel:
        self.slots[request.image] = [time.monotonic() - self.t0, 0.0]
        model = await self.inner.start(request)
        self._enter("run")
        self._by_container[model.container_id] = request.image
        return model

    async def state(self, model: RunningModel) -> ContainerState:
        return await self.inner.state(model)

    async def logs(self, model: RunningModel) -> str:
        return await self.inner.logs(model)

    async def stop(self, model: RunningModel) -> None:
        await self.inner.stop(model)
        self._live["run"] -= 1
        self.slots[self._by_container[model.container_id]][1] = time.monotonic() - self.t0

    async def remove_image(self, image: str) -> None:
        await self.inner.remove_image(image)

    async def sweep(self) -> SweepReport:
        return await self.inner.sweep()


def _repo(root: Path, ident: str, sleep_s: float) -> Path:
    repo = root / ident
    shutil.copytree(PASSTHROUGH, repo)
    server = repo / "app/server.py"
    text = server.read_text()
    hook = "def run_enhance():\n"
    if hook not in text:
        raise SystemExit(f"{server}: no `{hook.strip()}` to add the sleep to")
    server.write_text(text.replace(hook, f"{hook}    __import__('time').sleep({sleep_s!r})\n"))
    (repo / "app/id.txt").write_text(ident + "\n")
    return repo


def _phases(result: BenchmarkResult, engine: TimedEngine) -> dict[str, float]:
    steps = {s.step: s.seconds for s in result.steps}
    build = engine.builds[result.image_id]
    slot = engine.slots[result.image_id]
    return {
        "build": round(build[1] - build[0], 3),
        "slot": round(slot[1] - slot[0], 3),
        "enhance": round(steps["enhance"], 3),
        "score": round(steps["score"], 3),
    }


def ideal_makespan(phases: list[dict[str, float]], builds: int, slots: int) -> float:
    """Zero-overhead list schedule: builds FIFO on ``builds`` lanes, then the slot phase on the
    first free of ``slots`` in build-finish order, then scoring (never waits)."""
    lanes = [0.0] * builds
    built: list[tuple[float, int]] = []
    for i, p in enumerate(phases):
        start = heapq.heappop(lanes)
        heapq.heappush(lanes, start + p["build"])
        built.append((start + p["build"], i))
    free = [0.0] * slots
    end = 0.0
    for ready, i in sorted(built):
        start = max(ready, heapq.heappop(free))
        released = start + phases[i]["slot"]
        heapq.heappush(free, released)
        end = max(end, released + phases[i]["score"])
    return end


def _engine_url() -> str:
    sock = Path(f"/tmp/soundsright-podman-{os.getuid()}/podman.sock")
    if not os.environ.get("DOCKER_HOST") and sock.exists():
        return f"unix://{sock}"
    return default_engine_url(None, os.environ)


async def _phase(
    runner: BenchmarkRunner,
    engine: TimedEngine,
    models: list[ModelUnderTest],
    ds: DatasetDirs,
    *,
    pipelined: bool,
) -> tuple[float, list[dict[str, float]]]:
    start = time.monotonic()
    if pipelined:
        results = await runner.benchmark_many(models, ds)
    else:
        results = [await runner.benchmark(m, ds) for m in models]
    wall = time.monotonic() - start
    for r in results:
        if not r.passed:
            raise SystemExit(f"model {r.model} failed: {orjson.dumps(r.to_dict()).decode()}")
    return wall, [_phases(r, engine) for r in results]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    owner = f"bench-{os.getpid()}"
    firewall = BridgeFirewall("srbp") if os.geteuid() == 0 else None
    inner = DockerEngine(url=_engine_url(), owner=owner, bridge_prefix="srbp", firewall=firewall)
    engine = TimedEngine(inner)
    config = RunnerConfig(
        build_timeout_s=300,
        max_concurrent_builds=args.builds,
        timeouts=StepTimeouts(status=60, enhance=args.sleep + 60),
        owner=owner,
    )
    with tempfile.TemporaryDirectory(prefix="soundsright-bench-") as tmp_name:
        tmp = Path(tmp_name)
        async with ScoringPool(workers=2) as pool, inner:
            spec = DatasetSpec(COMPETITION, count=2, seed=0, out=tmp / "ds", sentences=1)
            ds = await generate_dataset(spec, pool=pool)
            dirs = DatasetDirs(ds.clean_dir, ds.degraded_dir)
            runner = BenchmarkRunner(
                engines=[(engine, [None] * args.slots)],
                pool=pool,
                work_dir=tmp / "work",
                config=config,
            )
            sets: dict[str, list[ModelUnderTest]] = {}
            for phase in ("pipelined", "sequential"):
                sets[phase] = []
                for i in range(args.models):
                    repo = _repo(tmp / phase, f"{phase}-{i}-{os.getpid()}", args.sleep)
                    digest = await inspect_repo(repo, LIMITS)
                    sets[phase].append(
                        ModelUnderTest(f"{phase}-{i}", repo, digest.content_hash, COMPETITION)
                    )
            pipe_wall, pipe = await _phase(runner, engine, sets["pipelined"], dirs, pipelined=True)
            peak = dict(engine.peak)
            seq_wall, seq = await _phase(runner, engine, sets["sequential"], dirs, pipelined=False)
            left = await inner.sweep()
    ideal = ideal_makespan(seq, args.builds, args.slots)
    ideal_contended = ideal_makespan(pipe, args.builds, args.slots)
    return {
        "benchmark": "pipeline",
        "engine": "podman (real containers)",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "models": args.models,
        "run_slots": args.slots,
        "max_concurrent_builds": args.builds,
        "enhance_sleep_s": args.sleep,
        "dataset": f"{COMPETITION.name}, 2 files",
        "sequential_s": round(seq_wall, 3),
        "pipelined_s": round(pipe_wall, 3),
        "ideal_overlap_s": round(ideal, 3),
        "pipelined_over_ideal": round(pipe_wall / ideal, 3),
        "sequential_over_pipelined": round(seq_wall / pipe_wall, 3),
        "ideal_from_pipelined_phases_s": round(ideal_contended, 3),
        "peak_concurrent": {"builds": peak["build"], "containers": peak["run"]},
        "target_met": pipe_wall / ideal <= 1.3,
        "left_behind_after_run": left.total,
        "phases_sequential": seq,
        "phases_pipelined": pipe,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds /enhance/ sleeps")
    parser.add_argument("--builds", type=int, default=2, help="concurrent builds")
    configure_logging("json", "warning")  # logs to stderr; stdout carries only the JSON
    result = asyncio.run(main(parser.parse_args()))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
