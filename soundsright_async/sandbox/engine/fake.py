"""``FakeEngine``: an in-memory container engine for tests of code that benchmarks models.

``behaviour(image_tag)`` decides what "running" an image means: it returns the ``base_url`` of a
model server the test started (e.g. an aiohttp app on 127.0.0.1), or raises ``StartFailed``.
``build_errors`` maps a tag to the ``BuildFailed`` its build raises; ``build_delay_s`` and
``calls`` let tests check concurrency and order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from .base import BuildRequest, BuiltImage, ContainerState, RunningModel, RunRequest, SweepReport
from .errors import BuildFailed

__all__ = ["FakeEngine"]


class FakeEngine:
    def __init__(
        self,
        behaviour: Callable[[str], str],
        *,
        name: str = "fake",
        build_errors: Mapping[str, BuildFailed] | None = None,
        build_delay_s: float = 0.0,
    ) -> None:
        self._behaviour = behaviour
        self._name = name
        self._build_errors = dict(build_errors or {})
        self._build_delay_s = build_delay_s
        self._ids = itertools.count(1)
        self.images: dict[str, str] = {}
        self.running: dict[str, RunningModel] = {}
        self.calls: list[tuple[str, str]] = []
        self.opened = False

    @property
    def name(self) -> str:
        return self._name

    async def open(self) -> None:
        self.opened = True

    async def aclose(self) -> None:
        self.opened = False

    async def build(self, request: BuildRequest) -> BuiltImage:
        self.calls.append(("build", request.tag))
        if self._build_delay_s:
            await asyncio.sleep(self._build_delay_s)
        if request.tag in self._build_errors:
            raise self._build_errors[request.tag]
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[request.tag] = image_id
        return BuiltImage(image_id=image_id, tag=request.tag, log="built (fake)\n")

    async def start(self, request: RunRequest) -> RunningModel:
        tag = next((t for t, i in self.images.items() if request.image in (t, i)), request.image)
        self.calls.append(("start", tag))
        url = urlsplit(self._behaviour(tag))
        cid = f"fake-{next(self._ids)}"
        model = RunningModel(
            container_id=cid, network_id=f"net-{cid}", ip=url.hostname or "", port=url.port or 80
        )
        self.running[cid] = model
        return model

    async def state(self, model: RunningModel) -> ContainerState:
        return ContainerState(running=model.container_id in self.running)

    async def logs(self, model: RunningModel) -> str:
        return ""

    async def stop(self, model: RunningModel) -> None:
        self.calls.append(("stop", model.container_id))
        self.running.pop(model.container_id, None)

    async def remove_image(self, image: str) -> None:
        self.calls.append(("remove_image", image))
        self.images = {t: i for t, i in self.images.items() if image not in (t, i)}

    async def sweep(self) -> SweepReport:
        report = SweepReport(containers=list(self.running), images=list(self.images.values()))
        self.running.clear()
        self.images.clear()
        return report
