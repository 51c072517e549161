"""One contract for the container engine, run against ``FakeEngine`` (always) and
``DockerEngine`` on the running Podman (marked slow), so the fake cannot drift from the adapter.

Each harness gives the engine, three build contexts (a model that serves the API, a Dockerfile
whose ``RUN`` fails, a build slower than its deadline) and a way to list what the engine still
holds with the test's owner label, read without the engine (the Podman CLI for the real one).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from containers.podman import ROOT, engine_url

from soundsright_async.sandbox.engine import (
    BridgeFirewall,
    BuildFailed,
    BuildRequest,
    ContainerEngine,
    DockerEngine,
    FakeEngine,
    RunningModel,
    RunRequest,
    StartFailed,
    project_labels,
)

OWNER = f"contract-{os.getpid()}"
TAG = "localhost/soundsright-model:contract"
SLOW_BUILD_S = 6.0
DEADLINE_S = 2.0


@dataclass
class Harness:
    engine: ContainerEngine
    good: Path
    bad: Path
    slow: Path
    leftovers: Callable[[], Awaitable[list[str]]]

    def request(self, context: Path, name: str, timeout_s: float = 120.0) -> BuildRequest:
        return BuildRequest(
            context, f"{TAG}-{name}-{os.getpid()}", project_labels(OWNER), timeout_s
        )


def _contexts(root: Path) -> tuple[Path, Path, Path]:
    good = root / "good"
    shutil.copytree(ROOT / "examples/models/passthrough", good)
    bad, slow = root / "bad", root / "slow"
    for path, step in ((bad, "RUN echo contract-fails && false"), (slow, "RUN sleep 6")):
        path.mkdir()
        (path / "Dockerfile").write_text(f"FROM localhost/soundsright-base:latest\n{step}\n")
    return good, bad, slow


async def _status_server() -> web.AppRunner:
    app = web.Application()

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"container_running": True})

    app.router.add_get("/status/", status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[Harness]:
    good, bad, slow = _contexts(tmp_path)
    server = await _status_server()
    url = f"http://127.0.0.1:{server.addresses[0][1]}"
    engine = FakeEngine(
        lambda tag: url,
        build_errors={
            f"{TAG}-bad-{os.getpid()}": BuildFailed("build_failed", "contract-fails", log="")
        },
        build_delays={f"{TAG}-slow-{os.getpid()}": SLOW_BUILD_S},
    )

    async def leftovers() -> list[str]:
        return [*engine.images, *engine.running]

    await engine.open()
    yield Harness(engine, good, bad, slow, leftovers)
    await engine.aclose()
    await server.cleanup()


def _podman_json(*args: str) -> list[dict[str, object]]:
    env = dict(os.environ, CONTAINERS_CONF=f"/tmp/soundsright-podman-{os.getuid()}/containers.conf")
    out = subprocess.run(
        ["podman", *args, "--format", "json"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout or "[]")  # type: ignore[no-any-return]


async def _podman_leftovers() -> list[str]:
    def listing() -> list[str]:
        owned = f"label=soundsright.owner={OWNER}"
        found = [f"container {c['Id']}" for c in _podman_json("ps", "-a", "--filter", owned)]
        found += [f"image {i['Id']}" for i in _podman_json("images", "-a", "--filter", owned)]
        found += [
            f"network {n['name']}"
            for n in _podman_json("network", "ls")
            if (n.get("labels") or {}).get("soundsright.owner") == OWNER  # type: ignore[union-attr]
        ]
        return found

    return await asyncio.to_thread(listing)


@pytest.fixture
async def docker(tmp_path: Path) -> AsyncIterator[Harness]:
    url = engine_url()
    good, bad, slow = _contexts(tmp_path)
    engine = DockerEngine(
        url=url,
        owner=OWNER,
        bridge_prefix="srbc",
        firewall=BridgeFirewall("srbc") if os.geteuid() == 0 else None,
    )
    async with engine:
        yield Harness(engine, good, bad, slow, _podman_leftovers)
        await engine.sweep()


@pytest.fixture(params=["fake", pytest.param("docker", marks=pytest.mark.slow)])
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.getfixturevalue(str(request.param))  # type: ignore[no-any-return]


async def _reach(model: RunningModel, within_s: float = 30.0) -> dict[str, object]:
    """``GET /status/`` at the model's address until it answers (the container boots)."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession(trust_env=False) as http:
        while True:
            try:
                async with asyncio.timeout(2):
                    async with http.get(model.base_url + "/status/") as resp:
                        return await resp.json()  # type: ignore[no-any-return]
            except (aiohttp.ClientError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)


async def test_build_start_reach_stop_remove(harness: Harness) -> None:
    engine = harness.engine
    request = harness.request(harness.good, "good")
    built = await engine.build(request)
    assert built.tag == request.tag
    assert built.image_id
    model = await engine.start(RunRequest(built.image_id, project_labels(OWNER)))
    assert model.port == 6500 or model.ip == "127.0.0.1"
    assert (await _reach(model))["container_running"] is True
    assert (await engine.state(model)).running
    assert isinstance(await engine.logs(model), str)

    await engine.stop(model)
    assert not (await engine.state(model)).running
    await engine.stop(model)  # idempotent
    await engine.remove_image(request.tag)
    await engine.remove_image(request.tag)  # idempotent
    with pytest.raises(StartFailed):
        await engine.start(RunRequest(built.image_id, project_labels(OWNER)))
    assert await harness.leftovers() == []


async def test_start_of_an_unbuilt_image_fails_and_leaves_nothing(harness: Harness) -> None:
    with pytest.raises(StartFailed):
        await harness.engine.start(
            RunRequest(f"{TAG}-never-built-{os.getpid()}", project_labels(OWNER))
        )
    assert await harness.leftovers() == []


async def test_failing_build_has_a_reason_and_leaves_nothing(harness: Harness) -> None:
    with pytest.raises(BuildFailed) as failed:
        await harness.engine.build(harness.request(harness.bad, "bad"))
    assert failed.value.reason == "build_failed"
    assert "contract-fails" in failed.value.detail + failed.value.log
    assert await harness.leftovers() == []


async def test_refused_dockerfile_fails_before_building(harness: Harness, tmp_path: Path) -> None:
    ctx = tmp_path / "refused"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM localhost/soundsright-base:latest\nADD http://127.0.0.1:9/x /x\n"
    )
    with pytest.raises(BuildFailed) as failed:
        await harness.engine.build(harness.request(ctx, "refused"))
    assert failed.value.reason == "build_refused"
    assert failed.value.detail.startswith("Dockerfile line 2: ADD from a URL")
    assert await harness.leftovers() == []


async def test_build_past_its_deadline_fails_and_leaves_nothing(harness: Harness) -> None:
    request = harness.request(harness.slow, "slow", timeout_s=DEADLINE_S)
    t0 = time.monotonic()
    with pytest.raises(BuildFailed) as failed:
        await harness.engine.build(request)
    assert failed.value.reason == "build_timeout"
    assert "within 2 s" in failed.value.detail
    assert time.monotonic() - t0 < DEADLINE_S + 3
    # the build is stopped, not abandoned: nothing appears later either
    await asyncio.sleep(SLOW_BUILD_S + 1)
    assert await harness.leftovers() == []


async def test_sweep_removes_what_the_owner_holds(harness: Harness) -> None:
    engine = harness.engine
    built = await engine.build(harness.request(harness.good, "swept"))
    model = await engine.start(RunRequest(built.image_id, project_labels(OWNER)))
    report = await engine.sweep()
    assert model.container_id in report.containers
    assert built.image_id in report.images
    assert not (await engine.state(model)).running
    assert await harness.leftovers() == []
    assert (await engine.sweep()).total == 0
