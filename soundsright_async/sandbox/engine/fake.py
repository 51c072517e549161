"""``FakeEngine``: an in-memory container engine for tests of code that benchmarks models.

``behaviour(image_tag)`` decides what "running" an image means: it returns the ``base_url`` of a
model server the test started (e.g. an aiohttp app on 127.0.0.1), or raises ``StartFailed``.
A ``Dockerfile`` in the context gets the real preflight (refused URLs and foreign images).
``build_errors`` maps a tag to the ``BuildFailed`` its build raises; a build takes
``build_delays[tag]`` (default ``build_delay_s``) and fails with ``build_timeout`` when that is
over its deadline. ``calls`` records the order of operations and ``peak`` the most builds /
containers alive at once.

It keeps the contract of ``DockerEngine`` (``tests/test_sandbox_contract.py`` runs the same
suite against both): starting an image that was not built raises ``StartFailed``, ``stop`` and
``remove_image`` are idempotent, ``sweep`` removes everything and reports it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .base import (
    BuildRequest,
    BuiltImage,
    ContainerEngine,
    ContainerState,
    RunningModel,
    RunRequest,
    SweepReport,
)
from .dockerfile import check_dockerfile
from .errors import BuildFailed, EngineError, StartFailed
from .spec import BASE_IMAGE

__all__ = ["FakeEngine"]


class FakeEngine:
    def __init__(
        self,
        behaviour: Callable[[str], str],
        *,
        name: str = "fake",
        build_errors: Mapping[str, BuildFailed] | None = None,
        build_delay_s: float = 0.0,
        build_delays: Mapping[str, float] | None = None,
        base_images: Sequence[str] = (BASE_IMAGE,),
    ) -> None:
        self._behaviour = behaviour
        self._name = name
        self._build_errors = dict(build_errors or {})
        self._build_delay_s = build_delay_s
        self._build_delays = dict(build_delays or {})
        self._base_images = tuple(base_images)
        self._ids = itertools.count(1)
        self.images: dict[str, str] = {}
        self.running: dict[str, RunningModel] = {}
        self.calls: list[tuple[str, str]] = []
        self.opened = False
        self.down: str | None = None
        self.orphans: set[str] = set()
        """Set it to make every call fail with ``EngineError(down)`` (the engine gone)."""
        self.live = {"builds": 0, "containers": 0}
        self.peak = {"builds": 0, "containers": 0}

    def _enter(self, kind: str) -> None:
        self.live[kind] += 1
        self.peak[kind] = max(self.peak[kind], self.live[kind])

    @property
    def name(self) -> str:
        return self._name

    async def open(self) -> None:
        self.opened = True

    async def aclose(self) -> None:
        self.opened = False

    def _check_up(self) -> None:
        if self.down is not None:
            raise EngineError(f"engine {self._name}: {self.down}")

    async def ping(self) -> None:
        self.calls.append(("ping", ""))
        self._check_up()
        for cid in sorted(self.orphans):
            if self.running.pop(cid, None) is not None:
                self.live["containers"] -= 1
        self.orphans.clear()

    async def build(self, request: BuildRequest) -> BuiltImage:
        self.calls.append(("build", request.tag))
        self._check_up()
        dockerfile = request.context / "Dockerfile"
        if await asyncio.to_thread(dockerfile.is_file):
            # the same preflight as DockerEngine (a context without a Dockerfile is accepted
            # here, so runner tests need no files)
            check_dockerfile(await asyncio.to_thread(dockerfile.read_text), self._base_images)
        self._enter("builds")
        try:
            delay = self._build_delays.get(request.tag, self._build_delay_s)
            if delay > request.timeout_s:
                await asyncio.sleep(request.timeout_s)
                raise BuildFailed(
                    "build_timeout", f"the build did not finish within {request.timeout_s:g} s"
                )
            if delay:
                await asyncio.sleep(delay)
        finally:
            self.live["builds"] -= 1
        if request.tag in self._build_errors:
            raise self._build_errors[request.tag]
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[request.tag] = image_id
        return BuiltImage(image_id=image_id, tag=request.tag, log="built (fake)\n")

    async def start(self, request: RunRequest) -> RunningModel:
        tag = next((t for t, i in self.images.items() if request.image in (t, i)), None)
        self.calls.append(("start", tag or request.image))
        self._check_up()
        if tag is None:
            raise StartFailed(f"no such image: {request.image}")
        url = urlsplit(self._behaviour(tag))
        cid = f"fake-{next(self._ids)}"
        model = RunningModel(
            container_id=cid, network_id=f"net-{cid}", ip=url.hostname or "", port=url.port or 80
        )
        self.running[cid] = model
        self._enter("containers")
        return model

    async def state(self, model: RunningModel) -> ContainerState:
        self._check_up()
        if model.container_id in self.running:
            return ContainerState(running=True)
        return ContainerState(running=False, error="no such container")

    async def logs(self, model: RunningModel) -> str:
        return ""

    async def stop(self, model: RunningModel) -> None:
        self.calls.append(("stop", model.container_id))
        if self.down is not None:  # as DockerEngine: the removal waits for the engine
            self.orphans.add(model.container_id)
            return
        if self.running.pop(model.container_id, None) is not None:
            self.live["containers"] -= 1

    async def remove_image(self, image: str) -> None:
        self.calls.append(("remove_image", image))
        if self.down is not None:
            return
        self.images = {t: i for t, i in self.images.items() if image not in (t, i)}

    async def sweep(self) -> SweepReport:
        report = SweepReport(containers=list(self.running), images=list(self.images.values()))
        self.running.clear()
        self.live["containers"] = 0
        self.images.clear()
        return report


if TYPE_CHECKING:

    def _is_an_engine(fake: FakeEngine) -> ContainerEngine:
        return fake  # mypy checks the fake against the seam
