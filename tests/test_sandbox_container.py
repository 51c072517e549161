"""The sandbox with real Podman containers: the example models, the hostile repos, cleanup.

Needs Podman (``make podman``; CI runs it) and the base image (``make base-image``); see
``tests/containers/podman.py``. Traffic goes only to the containers and networks these tests
create, and to a listener on the host side of those networks.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from containers.hostile import hostile_repo
from containers.podman import ROOT, engine_url

from soundsright_async.audio.dataset import DatasetSpec, generate_dataset
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import get_competition
from soundsright_async.sandbox import ModelRejected, RepoLimits, inspect_repo
from soundsright_async.sandbox.client import ClientLimits, StepTimeouts
from soundsright_async.sandbox.engine import (
    BridgeFirewall,
    BuildFailed,
    BuildRequest,
    DockerEngine,
    SandboxLimits,
    project_labels,
)
from soundsright_async.sandbox.runner import (
    BenchmarkResult,
    BenchmarkRunner,
    DatasetDirs,
    ModelUnderTest,
    RunnerConfig,
)

pytestmark = pytest.mark.slow

OWNER = f"test-{os.getpid()}"
PREFIX = "srbt"
LIMITS = RepoLimits(max_total_bytes=10**8, max_files=1000, max_file_bytes=10**8)


@pytest.fixture
async def engine() -> AsyncIterator[DockerEngine]:
    url = engine_url()
    firewall = BridgeFirewall(PREFIX) if os.geteuid() == 0 else None
    eng = DockerEngine(
        url=url,
        owner=OWNER,
        bridge_prefix=PREFIX,
        firewall=firewall,
        limits=SandboxLimits(memory_bytes=512 * 2**20, cpus=1.0, pids=64, tmpfs_bytes=256 * 2**20),
    )
    async with eng:
        yield eng
        await eng.sweep()


@pytest.fixture
async def pool() -> AsyncIterator[ScoringPool]:
    async with ScoringPool(workers=2) as p:
        yield p


def _runner(
    engine: DockerEngine, pool: ScoringPool, tmp: Path, **timeouts: float
) -> BenchmarkRunner:
    config = RunnerConfig(
        build_timeout_s=300,
        timeouts=StepTimeouts(status=30, prepare=10, upload=10, enhance=60, download=10, reset=10)
        if not timeouts
        else StepTimeouts(**({"status": 30.0} | timeouts)),
        client=ClientLimits(max_download_bytes=20 * 2**20, max_extracted_bytes=8 * 2**20),
        owner=OWNER,
    )
    return BenchmarkRunner(
        engines=[(engine, [None])], pool=pool, work_dir=tmp / "work", config=config
    )


async def _model(path: Path, competition: str, label: str) -> ModelUnderTest:
    digest = await inspect_repo(path, LIMITS)
    return ModelUnderTest(label, path, digest.content_hash, get_competition(competition), label)


async def _with_lag(coro: object) -> tuple[BenchmarkResult, float]:
    """Run the benchmark while measuring the event loop's worst scheduling delay."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.05)
            worst = max(worst, time.monotonic() - t - 0.05)

    tick = asyncio.create_task(ticker())
    try:
        result = await coro  # type: ignore[misc]
    finally:
        done.set()
        await tick
    return result, worst


def _generated(root: Path, competition: str, *, count: int, sentences: int) -> DatasetDirs:
    """The validator's offline dataset (espeak-ng speech, synthetic noise or rooms)."""
    spec = DatasetSpec(
        get_competition(competition), count=count, seed=1, out=root, sentences=sentences
    )
    return DatasetDirs.of(asyncio.run(generate_dataset(spec)))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetDirs]:
    root = tmp_path_factory.mktemp("datasets")
    return {
        "hostile": _generated(root / "hostile", "DENOISING_16000HZ", count=2, sentences=1),
        "DENOISING_16000HZ": _generated(root / "den", "DENOISING_16000HZ", count=3, sentences=2),
        "DEREVERBERATION_16000HZ": _generated(
            root / "der", "DEREVERBERATION_16000HZ", count=3, sentences=2
        ),
    }


async def test_examples_pass_and_improve(
    engine: DockerEngine, pool: ScoringPool, tmp_path: Path, datasets: dict[str, DatasetDirs]
) -> None:
    runner = _runner(engine, pool, tmp_path)
    scores = {}
    for comp, models in (
        ("DENOISING_16000HZ", ("passthrough", "spectral-gate")),
        ("DEREVERBERATION_16000HZ", ("passthrough", "dereverb")),
    ):
        ds = datasets[comp]
        for name in models:
            model = await _model(ROOT / "examples/models" / name, comp, name)
            result = await runner.benchmark(model, ds)
            assert result.passed, result.to_dict()
            assert result.metrics is not None
            scores[comp, name] = {m.value: r.average for m, r in result.metrics.metrics.items()}
    den, der = "DENOISING_16000HZ", "DEREVERBERATION_16000HZ"
    assert scores[den, "spectral-gate"]["ESTOI"] > scores[den, "passthrough"]["ESTOI"]
    assert scores[den, "spectral-gate"]["PESQ"] > scores[den, "passthrough"]["PESQ"]
    # WPE + spectral decay subtraction: about +0.08 ESTOI on espeak speech in synthetic rooms
    assert scores[der, "dereverb"]["ESTOI"] > scores[der, "passthrough"]["ESTOI"] + 0.03
    assert scores[der, "dereverb"]["PESQ"] > scores[der, "passthrough"]["PESQ"]


@pytest.fixture
def dataset(datasets: dict[str, DatasetDirs]) -> DatasetDirs:
    return datasets["hostile"]


HOSTILE = [
    # mode, expected failed step, expected reasons, step deadlines
    ("hang", "enhance", {"timeout"}, {"enhance": 3.0}),
    ("trickle", "download", {"timeout"}, {"download": 3.0}),
    ("traversal", "download", {"path_traversal"}, {}),
    ("absolute", "download", {"absolute_path"}, {}),
    ("bomb", "download", {"too_large"}, {}),
    ("wrong_names", "outputs", {"wrong_outputs"}, {}),
    ("missing", "outputs", {"wrong_outputs"}, {}),
    ("forkbomb", "enhance", {"http_status"}, {}),
    ("memory", "enhance", {"oom_killed"}, {}),
    ("longname", "download", {"name_too_long"}, {}),
    ("conflict", "download", {"path_conflict"}, {}),
    ("corrupt", "download", {"bad_member"}, {}),
    ("cdbomb", "download", {"too_many_members"}, {}),
    ("cdbomb_real", "download", {"too_many_members"}, {}),
]


@pytest.mark.parametrize(
    ("mode", "step", "reasons", "deadlines"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
async def test_hostile_model_is_contained(
    engine: DockerEngine,
    pool: ScoringPool,
    tmp_path: Path,
    dataset: DatasetDirs,
    mode: str,
    step: str,
    reasons: set[str],
    deadlines: dict[str, float],
) -> None:
    runner = _runner(engine, pool, tmp_path, **deadlines)
    model = await _model(hostile_repo(tmp_path, mode), "DENOISING_16000HZ", mode)
    t0 = time.monotonic()
    result, lag = await _with_lag(runner.benchmark(model, dataset))
    failed = result.failed
    assert failed is not None, result.to_dict()
    assert (failed.step, failed.reason) in {(step, r) for r in reasons}, result.to_dict()
    assert lag < 0.5, f"event loop stalled for {lag:.2f} s"
    if deadlines:
        assert time.monotonic() - t0 < 60


async def test_user_namespaces_are_denied(
    engine: DockerEngine, pool: ScoringPool, tmp_path: Path, dataset: DatasetDirs
) -> None:
    """``unshare -r`` (a new user namespace: uid 0 with every capability inside it) fails in a
    model container: the seccomp profile denies CLONE_NEWUSER with EPERM."""
    runner = _runner(engine, pool, tmp_path)
    model = await _model(hostile_repo(tmp_path, "userns"), "DENOISING_16000HZ", "userns")
    result = await runner.benchmark(model, dataset)
    failed = result.failed
    assert failed is not None, result.to_dict()
    assert (failed.step, failed.reason) == ("enhance", "http_status"), result.to_dict()
    assert "unshare rc=1: unshare: unshare failed: Operation not permitted" in failed.detail


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


async def test_hostile_zips_fail_alone_in_a_batch(
    engine: DockerEngine, pool: ScoringPool, tmp_path: Path, datasets: dict[str, DatasetDirs]
) -> None:
    """A long-name zip, a crafted central-directory bomb (19.8M members claimed in 116 bytes)
    and a real 200k-entry bomb beside two example models in one ``benchmark_many``: the
    examples pass, each hostile model fails with its reason, the validator stays small."""
    dataset = datasets["DENOISING_16000HZ"]
    config = RunnerConfig(
        build_timeout_s=300,
        timeouts=StepTimeouts(status=30, prepare=10, upload=10, enhance=60, download=20, reset=10),
        client=ClientLimits(max_download_bytes=32 * 2**20, max_extracted_bytes=8 * 2**20),
        owner=OWNER,
    )
    runner = BenchmarkRunner(
        engines=[(engine, [None, None])], pool=pool, work_dir=tmp_path / "work", config=config
    )
    comp = "DENOISING_16000HZ"
    models = [
        await _model(hostile_repo(tmp_path, "longname"), comp, "longname"),
        await _model(ROOT / "examples/models/passthrough", comp, "passthrough"),
        await _model(hostile_repo(tmp_path, "cdbomb"), comp, "cdbomb"),
        await _model(ROOT / "examples/models/spectral-gate", comp, "spectral-gate"),
        await _model(hostile_repo(tmp_path, "cdbomb_real"), comp, "cdbomb_real"),
    ]
    t0 = time.monotonic()
    results, lag = await _with_lag(runner.benchmark_many(models, dataset))
    elapsed = time.monotonic() - t0
    by_label = {r.model: r for r in results}
    assert [r.model for r in results] == [m.label for m in models]
    for label in ("passthrough", "spectral-gate"):
        assert by_label[label].passed, by_label[label].to_dict()
        assert by_label[label].metrics is not None
        assert by_label[label].metrics.files == 3
    expected = {
        "longname": ("name_too_long", "is 304 bytes: at most 255 per path component"),
        "cdbomb": ("too_many_members", "declares 19800000 members (at most 11)"),
        "cdbomb_real": ("too_many_members", "declares 200000 members (at most 11)"),
    }
    for label, (reason, detail) in expected.items():
        failed = by_label[label].failed
        assert failed is not None, by_label[label].to_dict()
        assert (failed.step, failed.reason) == ("download", reason), by_label[label].to_dict()
        assert detail in failed.detail
    peak = _peak_rss()
    print(f"batch of 5: {elapsed:.1f} s, peak RSS {peak / 2**20:.0f} MiB, loop lag {lag:.3f} s")
    assert peak < 1_000_000_000
    assert lag < 0.5


async def test_egress_to_host_listener_fails(
    engine: DockerEngine, pool: ScoringPool, tmp_path: Path, dataset: DatasetDirs
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the firewall rule pair needs root (CI runs as root)")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))  # reachable via the gateway of the test's own network only
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        runner = _runner(engine, pool, tmp_path)
        model = await _model(
            hostile_repo(tmp_path, "egress", str(port)), "DENOISING_16000HZ", "egress"
        )
        result = await runner.benchmark(model, dataset)
        failed = result.failed
        assert failed is not None, result.to_dict()
        assert failed.step == "enhance", result.to_dict()
        assert "egress blocked" in failed.detail
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


async def test_failing_run_step_and_instant_exit(
    engine: DockerEngine, pool: ScoringPool, tmp_path: Path, dataset: DatasetDirs
) -> None:
    runner = _runner(engine, pool, tmp_path)
    bad_run = "FROM localhost/soundsright-base:latest\nRUN echo about to fail && false\n"
    model = await _model(
        hostile_repo(tmp_path, "runfails", dockerfile=bad_run), "DENOISING_16000HZ", "r"
    )
    result = await runner.benchmark(model, dataset)
    assert result.failed is not None, result.to_dict()
    assert result.failed.step == "build", result.to_dict()
    assert result.failed.reason == "build_failed"
    assert "about to fail" in result.build_log

    exits = 'FROM localhost/soundsright-base:latest\nCMD ["python3", "-c", "raise SystemExit(3)"]\n'
    model = await _model(
        hostile_repo(tmp_path, "exits", dockerfile=exits), "DENOISING_16000HZ", "e"
    )
    result = await runner.benchmark(model, dataset)
    failed = result.failed
    assert failed is not None, result.to_dict()
    assert failed.step in ("start", "status"), result.to_dict()
    assert "exited" in failed.detail or failed.reason == "container_exited"


async def test_symlink_repo_is_refused(engine: DockerEngine, tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path, "symlink")
    (repo / "app/passwd").symlink_to("/etc/passwd")
    with pytest.raises(ModelRejected) as rejected:
        await inspect_repo(repo, LIMITS)
    assert rejected.value.reason == "symlink"
    # and the engine refuses it too, before anything reaches the build
    with pytest.raises(BuildFailed, match="symbolic link"):
        await engine.build(
            BuildRequest(repo, "localhost/soundsright-model:symlink", project_labels(OWNER), 60)
        )


def _sh(*args: object, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(*args, **kw)  # type: ignore[call-overload,no-any-return]


def _podman(*args: str) -> list[dict[str, object]]:
    env = dict(os.environ, CONTAINERS_CONF=f"/tmp/soundsright-podman-{os.getuid()}/containers.conf")
    out = _sh(
        ["podman", *args, "--format", "json"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout or "[]")  # type: ignore[no-any-return]


async def test_cleanup_only_touches_labelled(
    engine: DockerEngine, pool: ScoringPool, tmp_path: Path, dataset: DatasetDirs
) -> None:
    env = dict(os.environ, CONTAINERS_CONF=f"/tmp/soundsright-podman-{os.getuid()}/containers.conf")
    foreign = f"foreign-{os.getpid()}"
    _sh(["podman", "network", "create", foreign], env=env, check=True, capture_output=True)
    _sh(
        ["podman", "create", "--name", foreign, "localhost/soundsright-base:latest", "true"],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        runner = _runner(engine, pool, tmp_path)
        model = await _model(ROOT / "examples/models/passthrough", "DENOISING_16000HZ", "p")
        assert (await runner.benchmark(model, dataset)).passed
        await engine.sweep()
        # only this test's owner: other users of the shared service run their own containers
        label = f"label=soundsright.owner={OWNER}"
        assert _podman("ps", "-a", "--filter", label) == []
        assert [
            n
            for n in _podman("network", "ls")
            if (n.get("labels") or {}).get("soundsright.owner") == OWNER
        ] == []
        assert _podman("images", "--filter", f"label=soundsright.owner={OWNER}") == []
        assert any(n.get("name") == foreign for n in _podman("network", "ls"))
        assert any(foreign in (c.get("Names") or []) for c in _podman("ps", "-a"))
        assert _podman("images", "--filter", "reference=localhost/soundsright-base")
        if os.geteuid() == 0:
            assert (
                f"{PREFIX}+"
                in _sh(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
            )
    finally:
        _sh(["podman", "rm", "-f", foreign], env=env, capture_output=True)
        _sh(["podman", "network", "rm", foreign], env=env, capture_output=True)
