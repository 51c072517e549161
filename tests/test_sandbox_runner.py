"""The benchmark runner's concurrency with ``FakeEngine``, model servers on 127.0.0.1 and a
scorer that counts: builds and run slots are bounded exactly, and scoring overlaps runs."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import BodyPartReader, web

from soundsright_async._exceptions import ScoringError, WorkerCrashedError
from soundsright_async.audio.metrics import DatasetScore, FileScore, aggregate
from soundsright_async.competitions import Competition, get_competition
from soundsright_async.sandbox.client import StepTimeouts
from soundsright_async.sandbox.engine import FakeEngine
from soundsright_async.sandbox.runner import (
    BenchmarkRunner,
    DatasetDirs,
    ModelUnderTest,
    RunnerConfig,
)

COMP = get_competition("DENOISING_16000HZ")
ENHANCE_S = 0.3
FILES = web.AppKey("files", dict[str, bytes])


@dataclass
class Counter:
    live: int = 0
    peak: int = 0
    total: int = 0

    def enter(self) -> None:
        self.live += 1
        self.total += 1
        self.peak = max(self.peak, self.live)

    def leave(self) -> None:
        self.live -= 1


@dataclass
class ModelServers:
    """One model API server on 127.0.0.1 per started container; ``enhance`` sleeps."""

    enhancing: Counter = field(default_factory=Counter)
    urls: list[str] = field(default_factory=list)
    runners: list[web.AppRunner] = field(default_factory=list)

    async def start(self, n: int) -> None:
        for _ in range(n):
            files: dict[str, bytes] = {}
            app = web.Application()
            app[FILES] = files
            app.router.add_get("/status/", self._status)
            app.router.add_post("/prepare/", self._prepare)
            app.router.add_post("/upload-audio/", self._upload)
            app.router.add_post("/enhance/", self._enhance)
            app.router.add_get("/download-enhanced/", self._download)
            app.router.add_post("/reset/", self._reset)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.runners.append(runner)
            self.urls.append(f"http://127.0.0.1:{port}")

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"container_running": True})

    async def _prepare(self, request: web.Request) -> web.Response:
        return web.json_response({"preparations": True})

    async def _upload(self, request: web.Request) -> web.Response:
        files = request.app[FILES]
        async for part in await request.multipart():
            assert isinstance(part, BodyPartReader)
            files[str(part.filename)] = await part.read()
        return web.json_response({"uploaded_files": sorted(files), "status": True})

    async def _enhance(self, request: web.Request) -> web.Response:
        self.enhancing.enter()
        try:
            await asyncio.sleep(ENHANCE_S)
        finally:
            self.enhancing.leave()
        return web.json_response({"status": True})

    async def _download(self, request: web.Request) -> web.Response:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in request.app[FILES].items():
                zf.writestr(name, data)
        return web.Response(body=buf.getvalue(), content_type="application/zip")

    async def _reset(self, request: web.Request) -> web.Response:
        request.app[FILES].clear()
        return web.json_response({"status": True, "noisy": [], "enhanced": []})


@dataclass
class CountingScorer:
    """Scores in ``delay_s``; records how many containers of ``engines`` run as it ends."""

    engines: list[FakeEngine]
    delay_s: float = 0.2
    scoring: Counter = field(default_factory=Counter)
    containers_meanwhile: list[int] = field(default_factory=list)

    async def score(
        self, competition: Competition, clean: Path, enhanced: Path, degraded: Path, /
    ) -> DatasetScore:
        self.scoring.enter()
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.scoring.leave()
        self.containers_meanwhile.append(sum(e.live["containers"] for e in self.engines))
        return aggregate(competition, [FileScore("0.wav", dict.fromkeys(competition.metrics, 1.0))])


@pytest.fixture
async def servers() -> AsyncIterator[ModelServers]:
    s = ModelServers()
    await s.start(8)
    yield s
    await s.close()


def _dataset(root: Path) -> DatasetDirs:
    for sub in ("clean", "degraded"):
        (root / sub).mkdir(parents=True)
        for i in range(2):
            (root / sub / f"{i}.wav").write_bytes(b"RIFF-not-really-audio")
    return DatasetDirs(root / "clean", root / "degraded")


def _models(root: Path, n: int) -> list[ModelUnderTest]:
    models = []
    for i in range(n):
        (root / f"m{i}").mkdir(parents=True)
        models.append(ModelUnderTest(f"m{i}", root / f"m{i}", f"{i:064x}", COMP, f"hk{i}"))
    return models


def _engine(servers: ModelServers, name: str, build_delay_s: float) -> FakeEngine:
    urls = iter(servers.urls if name == "a" else reversed(servers.urls))
    return FakeEngine(lambda tag: next(urls), name=name, build_delay_s=build_delay_s)


@pytest.mark.parametrize(("builds", "slots"), [(1, 1), (2, 2), (3, 2)])
async def test_builds_and_run_slots_are_bounded_and_scoring_overlaps(
    servers: ModelServers, tmp_path: Path, builds: int, slots: int
) -> None:
    engine = _engine(servers, "a", build_delay_s=0.1)
    scorer = CountingScorer([engine])
    runner = BenchmarkRunner(
        engines=[(engine, [None] * slots)],
        pool=scorer,
        work_dir=tmp_path / "work",
        config=RunnerConfig(max_concurrent_builds=builds, timeouts=StepTimeouts(status=5)),
    )
    n = 6
    t0 = time.monotonic()
    results = await runner.benchmark_many(_models(tmp_path, n), _dataset(tmp_path / "ds"))
    wall = time.monotonic() - t0
    assert all(r.passed for r in results), [r.to_dict() for r in results]
    assert engine.peak == {"builds": builds, "containers": slots}
    assert servers.enhancing.peak == slots
    assert [op for op, _ in engine.calls].count("build") == n
    assert [op for op, _ in engine.calls].count("start") == n
    assert [op for op, _ in engine.calls].count("stop") == n
    assert [op for op, _ in engine.calls].count("remove_image") == n
    assert engine.running == {}
    assert engine.images == {}
    assert scorer.scoring.total == n
    # scoring happened while other models' containers ran (the pipeline overlaps), and the
    # whole run took about ceil(n / slots) enhance rounds, not n of them
    assert max(scorer.containers_meanwhile) >= 1
    if slots > 1:
        assert wall < n * ENHANCE_S
        assert max(scorer.containers_meanwhile) == slots


async def test_run_slots_are_per_engine(servers: ModelServers, tmp_path: Path) -> None:
    a, b = _engine(servers, "a", 0.05), _engine(servers, "b", 0.05)
    scorer = CountingScorer([a, b])
    runner = BenchmarkRunner(
        engines=[(a, [None]), (b, [None])],
        pool=scorer,
        work_dir=tmp_path / "work",
        config=RunnerConfig(max_concurrent_builds=4),
    )
    results = await runner.benchmark_many(_models(tmp_path, 4), _dataset(tmp_path / "ds"))
    assert all(r.passed for r in results)
    assert sorted(r.engine for r in results) == ["a", "a", "b", "b"]
    assert a.peak["containers"] == b.peak["containers"] == 1
    assert servers.enhancing.peak == 2
    # builds of both engines share the one build bound
    assert a.peak["builds"] + b.peak["builds"] <= 4


async def test_build_failure_frees_its_build_slot(servers: ModelServers, tmp_path: Path) -> None:
    engine = _engine(servers, "a", build_delay_s=0.5)
    scorer = CountingScorer([engine])
    runner = BenchmarkRunner(
        engines=[(engine, [None])],
        pool=scorer,
        work_dir=tmp_path / "work",
        config=RunnerConfig(max_concurrent_builds=1, build_timeout_s=0.2),
    )
    results = await runner.benchmark_many(_models(tmp_path, 3), _dataset(tmp_path / "ds"))
    for r in results:
        assert r.failed is not None
        assert (r.failed.step, r.failed.reason) == ("build", "build_timeout")
        assert r.image_id == ""
        assert r.metrics is None
    assert engine.peak == {"builds": 1, "containers": 0}
    assert scorer.scoring.total == 0


@dataclass
class FailingScorer:
    """Fails scoring for the models whose enhanced dir is scored first (``fail_first`` calls)."""

    fail_first: int
    calls: int = 0

    async def score(
        self, competition: Competition, clean: Path, enhanced: Path, degraded: Path, /
    ) -> DatasetScore:
        self.calls += 1
        if self.calls == 1:
            raise WorkerCrashedError("score_file", -9)
        if self.calls <= self.fail_first:
            raise ScoringError("clean file 0.wav unreadable")
        return aggregate(competition, [FileScore("0.wav", dict.fromkeys(competition.metrics, 1.0))])


async def test_a_scoring_error_fails_only_that_model(servers: ModelServers, tmp_path: Path) -> None:
    engine = _engine(servers, "a", build_delay_s=0.05)
    runner = BenchmarkRunner(
        engines=[(engine, [None])],
        pool=FailingScorer(fail_first=2),
        work_dir=tmp_path / "work",
        config=RunnerConfig(max_concurrent_builds=1),
    )
    results = await runner.benchmark_many(_models(tmp_path, 3), _dataset(tmp_path / "ds"))
    failed = sorted((r.failed.step, r.failed.reason) for r in results if r.failed is not None)
    assert failed == [("score", "scoring_crashed"), ("score", "scoring_error")]
    assert sum(r.passed for r in results) == 1
    assert engine.running == {}
    assert engine.images == {}


async def test_any_error_fails_only_its_model(servers: ModelServers, tmp_path: Path) -> None:
    """An engine bug (a RuntimeError from start) and an unexpected scorer error (KeyError)
    are those models' failed steps; the batch returns every result."""
    urls = iter(servers.urls)

    def behaviour(tag: str) -> str:
        if "-hk1-" in tag:
            raise RuntimeError("engine bug")
        return next(urls)

    engine = FakeEngine(behaviour, name="a")

    @dataclass
    class KeyErrorScorer:
        """The first model scored (m0: one build and one run slot keep the order) hits a
        scorer bug."""

        calls: int = 0

        async def score(
            self, competition: Competition, clean: Path, enhanced: Path, degraded: Path, /
        ) -> DatasetScore:
            self.calls += 1
            if self.calls == 1:
                raise KeyError("missing metric")
            return aggregate(
                competition, [FileScore("0.wav", dict.fromkeys(competition.metrics, 1.0))]
            )

    runner = BenchmarkRunner(
        engines=[(engine, [None])],
        pool=KeyErrorScorer(),
        work_dir=tmp_path / "work",
        config=RunnerConfig(max_concurrent_builds=1),
    )
    results = await runner.benchmark_many(_models(tmp_path, 3), _dataset(tmp_path / "ds"))
    assert [r.model for r in results] == ["m0", "m1", "m2"]
    by = {r.model: r for r in results}
    assert by["m1"].failed is not None
    assert (by["m1"].failed.step, by["m1"].failed.reason) == ("start", "internal_error")
    assert by["m1"].failed.detail == "RuntimeError: engine bug"
    assert by["m0"].failed is not None
    assert (by["m0"].failed.step, by["m0"].failed.reason) == ("score", "internal_error")
    assert by["m0"].failed.detail == "KeyError: 'missing metric'"
    assert by["m2"].passed, by["m2"].to_dict()
    assert engine.running == {}
    assert engine.images == {}
