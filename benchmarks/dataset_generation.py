"""Dataset generation throughput: offline sources serial vs pooled, ElevenLabs concurrency.

    .venv/bin/python benchmarks/dataset_generation.py [--count 25] [--workers N] [--latency 0.3]

* offline: ``--count`` files for each of the four competitions with espeak-ng speech, synthetic
  noise and synthetic RIRs, once with a 1-worker pool ("serial") and once with ``--workers``
  workers (default: all CPUs). The two runs must produce byte-identical datasets.
* elevenlabs: ``--count`` DENOISING_16000HZ files from the local fake ElevenLabs server
  (``--latency`` seconds per request), with concurrency 1 and 4.

Prints one JSON object with the timings (seconds) and the speed-up ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from soundsright_async.audio.dataset import DatasetSpec, Sources, generate_dataset
from soundsright_async.audio.dataset.elevenlabs import ElevenLabsSource, RetryPolicy
from soundsright_async.audio.dataset.elevenlabs_fake import FakeElevenLabs
from soundsright_async.audio.dataset.noise import SyntheticNoiseSource
from soundsright_async.audio.pool import ScoringPool, default_workers
from soundsright_async.competitions import COMPETITIONS, get_competition
from soundsright_async.logs import configure_logging


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


async def _offline(count: int, workers: int, root: Path) -> tuple[dict[str, float], list[str]]:
    timings: dict[str, float] = {}
    digests = []
    async with ScoringPool(workers=workers) as pool:
        await pool.run(os.getpid)  # start a worker before timing
        total = time.perf_counter()
        for comp in COMPETITIONS:
            out = root / f"w{workers}-{comp.name}"
            start = time.perf_counter()
            await generate_dataset(DatasetSpec(comp, count, seed=2024, out=out), pool=pool)
            timings[comp.name] = round(time.perf_counter() - start, 3)
            digests.append(_digest(out))
        timings["total"] = round(time.perf_counter() - total, 3)
    return timings, digests


async def _elevenlabs(count: int, concurrency: int, latency: float, root: Path) -> float:
    async with FakeElevenLabs(latency_s=latency) as fake, ScoringPool() as pool:
        await pool.run(os.getpid)
        source = ElevenLabsSource(
            "test-key",
            pool=pool,
            base_url=fake.base_url,
            concurrency=concurrency,
            retry=RetryPolicy(request_timeout_s=30),
        )
        async with source:
            spec = DatasetSpec(
                get_competition("DENOISING_16000HZ"), count, 7, root / f"el-{concurrency}"
            )
            start = time.perf_counter()
            await generate_dataset(spec, pool=pool, sources=Sources(source, SyntheticNoiseSource()))
            return round(time.perf_counter() - start, 3)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soundsright-bench-") as tmp:
        root = Path(tmp)
        serial, d1 = await _offline(args.count, 1, root)
        pooled, d2 = await _offline(args.count, args.workers, root)
        el1 = await _elevenlabs(args.count, 1, args.latency, root)
        el4 = await _elevenlabs(args.count, 4, args.latency, root)
    return {
        "machine": {
            "python": platform.python_version(),
            "cpus_available": default_workers(),
            "workers": args.workers,
        },
        "offline": {
            "files_per_competition": args.count,
            "serial_s": serial,
            "pooled_s": pooled,
            "speedup": round(serial["total"] / pooled["total"], 2),
            "files_per_s_pooled": round(4 * args.count / pooled["total"], 2),
            "identical_output": d1 == d2,
        },
        "elevenlabs_fake": {
            "files": args.count,
            "latency_s": args.latency,
            "concurrency_1_s": el1,
            "concurrency_4_s": el4,
            "speedup": round(el1 / el4, 2),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=25)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--latency", type=float, default=0.3)
    configure_logging("json", "warning")  # logs to stderr; stdout carries only the JSON
    result = asyncio.run(main(parser.parse_args()))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
