"""The benchmark runner's concurrency with ``FakeEngine``, model servers on 127.0.0.1 and a
scorer that counts: builds and run slots are bounded exactly, and scoring overlaps runs."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
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
    EngineLoad,
    ModelUnderTest,
    NoEngineError,
    RunnerConfig,
    pick_engine,
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


# -- several engines: placement by free slots, an engine's failure moves the model ------------


@pytest.mark.parametrize(
    ("loads", "exclude", "want"),
    [
        ([("a", 1, 0, True), ("b", 3, 0, True)], (), 1),  # most free slots
        ([("a", 1, 0, True), ("b", 3, 2, True)], (), 0),  # a tie goes to the earlier engine
        ([("a", 2, 0, False), ("b", 1, 1, True)], (), 1),  # out of use: never, even if freer
        ([("a", 1, 3, True), ("b", 1, 2, True)], (), 1),  # queues count (negative free slots)
        ([("a", 4, 0, True), ("b", 1, 0, True)], ("a",), 1),  # already tried for this model
        ([("a", 4, 0, True), ("b", 1, 0, False)], ("a",), None),
        ([], (), None),
    ],
)
def test_pick_engine(
    loads: list[tuple[str, int, int, bool]], exclude: tuple[str, ...], want: int | None
) -> None:
    engines = [EngineLoad(*load) for load in loads]
    assert pick_engine(engines, frozenset(exclude)) == want


async def test_models_spread_over_engines_by_free_slots(
    servers: ModelServers, tmp_path: Path
) -> None:
    a, b = _engine(servers, "a", 0.05), _engine(servers, "b", 0.05)
    runner = BenchmarkRunner(
        engines=[(a, [None]), (b, [None, None, None])],
        pool=CountingScorer([a, b]),
        work_dir=tmp_path / "work",
        config=RunnerConfig(max_concurrent_builds=4),
    )
    results = await runner.benchmark_many(_models(tmp_path, 5), _dataset(tmp_path / "ds"))
    assert all(r.passed for r in results)
    # b (3 free) b (2) then a tie at 1 free goes to a, then b (1), then a tie at 0: a
    assert [r.engine for r in results] == ["b", "b", "a", "b", "a"]
    assert (a.peak["containers"], b.peak["containers"]) == (1, 3)


async def test_an_engine_that_fails_moves_its_model_and_is_used_again_once_back(
    servers: ModelServers, tmp_path: Path
) -> None:
    a, b = _engine(servers, "a", 0.05), _engine(servers, "b", 0.05)
    a.down = "Cannot connect to the engine"
    runner = BenchmarkRunner(
        engines=[(a, [None]), (b, [None])],
        pool=CountingScorer([a, b]),
        work_dir=tmp_path / "work",
        config=RunnerConfig(max_concurrent_builds=2, probe_interval_s=3600),
    )
    ds = _dataset(tmp_path / "ds")
    m0, m1, m2 = _models(tmp_path, 3)
    first = await runner.benchmark_many([m0, m1], ds)
    # m0 went to a (a tie), whose build failed: moved to b, after m1, never blamed
    assert [(r.model, r.engine, r.passed) for r in first] == [("m0", "b", True), ("m1", "b", True)]
    assert [(s.step, s.ok, s.reason, s.detail) for s in first[0].engine_failures] == [
        ("engine a", False, "engine_failed", "engine a: Cannot connect to the engine")
    ]
    assert first[1].engine_failures == []
    assert first[0].to_dict()["engine_failures"][0]["step"] == "engine a"
    assert [e.up for e in runner.loads()] == [False, True]
    # a still out: within the probe interval it is not even pinged
    assert [r.engine for r in await runner.benchmark_many([m2], ds)] == ["b"]
    assert ("ping", "") not in a.calls
    runner.config = replace(runner.config, probe_interval_s=0.0)
    # after the interval it is pinged; still failing, it stays out of use
    assert [r.engine for r in await runner.benchmark_many([m2], ds)] == ["b"]
    assert a.calls.count(("ping", "")) == 1
    a.down = None
    again = await runner.benchmark_many([m2], ds)
    assert [(r.engine, r.passed, r.engine_failures) for r in again] == [("a", True, [])]
    assert a.calls.count(("ping", "")) == 2
    assert [e.up for e in runner.loads()] == [True, True]
    assert a.running == b.running == {}


async def test_with_every_engine_out_of_use_the_model_is_not_blamed(
    servers: ModelServers, tmp_path: Path
) -> None:
    a, b = _engine(servers, "a", 0.0), _engine(servers, "b", 0.0)
    a.down, b.down = "gone", "gone too"
    runner = BenchmarkRunner(
        engines=[(a, [None]), (b, [None])],
        pool=CountingScorer([a, b]),
        work_dir=tmp_path / "work",
        config=RunnerConfig(probe_interval_s=3600),
    )
    ds = _dataset(tmp_path / "ds")
    (m0,) = _models(tmp_path, 1)
    with pytest.raises(NoEngineError) as info:
        await runner.benchmark(m0, ds)
    assert str(info.value) == (
        "no container engine to benchmark m0 on (out of use: a: engine a: gone; "
        "b: engine b: gone too)"
    )
    assert [f.step for f in info.value.failures] == ["engine a", "engine b"]
    # benchmark_many (model verify) records it as the model's engine_error step
    (r,) = await runner.benchmark_many([m0], ds)
    assert r.failed is not None
    assert (r.failed.step, r.failed.reason) == ("engine", "engine_error")
    assert r.failed.detail.startswith("no container engine to benchmark m0 on (out of use: a:")


async def test_a_container_left_while_its_engine_was_away_goes_when_it_answers(
    servers: ModelServers, tmp_path: Path
) -> None:
    """The engine goes away during enhance: the model talks to its container directly and
    finishes; the removal that failed then is done by the ping that finds the engine back."""
    a = _engine(servers, "a", 0.0)
    runner = BenchmarkRunner(
        engines=[(a, [None])],
        pool=CountingScorer([a]),
        work_dir=tmp_path / "work",
        config=RunnerConfig(probe_interval_s=0.0),
    )
    ds = _dataset(tmp_path / "ds")
    (m0,) = _models(tmp_path, 1)
    task = asyncio.create_task(runner.benchmark(m0, ds))
    async with asyncio.timeout(10):
        while servers.enhancing.live == 0:  # noqa: ASYNC110 (the counter has no event)
            await asyncio.sleep(0.01)
    a.down = "gone"
    result = await task
    assert (result.passed, result.engine) == (True, "a")
    assert len(a.running) == 1
    assert a.orphans == set(a.running)
    a.down = None
    await a.ping()
    assert (a.running, a.orphans) == ({}, set())
