"""Scoring throughput: sequential in one process vs the process pool, in the same run.

Builds synthetic 25-file datasets (about 10 s per file) at 16 kHz (PESQ + ESTOI) and at 48 kHz
(ESTOI + SI-SDR/SIR/SAR). Scores them sequentially with ``score_dataset`` (single-threaded BLAS,
like the workers; the default BLAS threading is timed too) and once through ``ScoringPool``
(warmed first: a daemon starts its workers once; the start-up time and the speedup including it
are reported too) while a 10 ms asyncio ticker measures event-loop lag.
Prints one JSON object. Usage: ``python benchmarks/metrics_throughput.py [--files N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from threadpoolctl import threadpool_limits

from soundsright_async.audio.metrics import DatasetScore, score_dataset
from soundsright_async.audio.pool import ScoringPool, default_workers
from soundsright_async.audio.testsignals import ScoringFixture, write_scoring_fixture
from soundsright_async.competitions import Competition, get_competition

COMPETITIONS = ("DENOISING_16000HZ", "DENOISING_48000HZ")


def _sequential(sets: list[tuple[Competition, ScoringFixture]]) -> list[DatasetScore]:
    return [score_dataset(c, fx.clean, fx.enhanced, fx.noisy) for c, fx in sets]


async def _pooled(
    sets: list[tuple[Competition, ScoringFixture]], workers: int
) -> tuple[list[DatasetScore], float, float, list[float]]:
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.010)
            lags.append(time.perf_counter() - t0 - 0.010)

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    async with ScoringPool(workers=workers) as pool:
        await pool.warm()
        t1 = time.perf_counter()
        results = await asyncio.gather(
            *(pool.score(c, fx.clean, fx.enhanced, fx.noisy) for c, fx in sets)
        )
        t2 = time.perf_counter()
    stop.set()
    await tick
    return list(results), t1 - t0, t2 - t1, lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sr-bench-") as tmp:
        sets = []
        for i, name in enumerate(COMPETITIONS):
            comp = get_competition(name)
            fx = write_scoring_fixture(
                Path(tmp) / name, comp, files=args.files, seconds=args.seconds, seed=i
            )
            sets.append((comp, fx))

        # Baseline: the same single-threaded BLAS the pool workers use, so the ratio measures the
        # pool alone. The process's default BLAS threading is timed too, for reference.
        with threadpool_limits(limits=1):
            t0 = time.perf_counter()
            sequential = _sequential(sets)
            sequential_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _sequential(sets)
        sequential_default_blas_s = time.perf_counter() - t0
        pooled, startup_s, pooled_s, lags = asyncio.run(_pooled(sets, args.workers))

    # pystoi's matrix products go through BLAS, whose summation order depends on its thread
    # count (workers run single-threaded BLAS), so ESTOI may differ in the last bit or two.
    diff = max(
        abs(a.metrics[m].scores[f] - b.metrics[m].scores[f])
        for a, b in zip(sequential, pooled, strict=True)
        for m in a.metrics
        for f in a.metrics[m].scores
    )
    same = diff <= 1e-9
    lag_ms = np.asarray(lags) * 1000.0
    report = {
        "benchmark": "metrics_throughput",
        "files_per_competition": args.files,
        "seconds_per_file": args.seconds,
        "competitions": list(COMPETITIONS),
        "workers": args.workers,
        "sequential_s": round(sequential_s, 3),
        "sequential_default_blas_s": round(sequential_default_blas_s, 3),
        "pooled_s": round(pooled_s, 3),
        "speedup": round(sequential_s / pooled_s, 3),
        "pool_startup_s": round(startup_s, 3),
        "speedup_with_startup": round(sequential_s / (startup_s + pooled_s), 3),
        "loop_lag_p99_ms": round(float(np.percentile(lag_ms, 99)), 3),
        "loop_lag_max_ms": round(float(lag_ms.max()), 3),
        "loop_ticks": int(lag_ms.size),
        "max_abs_difference": diff,
        "results_match": same,
    }
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
