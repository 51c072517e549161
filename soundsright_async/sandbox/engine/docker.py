"""``DockerEngine``: the container engine over the Docker Engine API (aiodocker). Podman's
``podman system service`` serves the same API; ``kind="podman"`` only changes the log driver.

Every API call has a deadline. Everything created carries the project labels
(``soundsright.managed=true``, ``soundsright.owner=<owner>``) and cleanup selects on them, so
nothing else on the engine is ever touched.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiodocker
import aiohttp
import structlog
from aiodocker.exceptions import DockerError

from .base import (
    BuildRequest,
    BuiltImage,
    ContainerEngine,
    ContainerState,
    RunningModel,
    RunRequest,
    SweepReport,
)
from .context import write_context_tar
from .errors import BuildFailed, EngineError, StartFailed
from .firewall import BridgeFirewall
from .spec import (
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_TMPFS,
    MODEL_PORT,
    EngineKind,
    SandboxLimits,
    container_config,
    network_config,
    tmpfs_paths,
    unique_suffix,
)

__all__ = ["DockerEngine"]

log = structlog.get_logger(__name__)
T = TypeVar("T")
_LINE_CAP = 1 << 20
_REAP_POLL_S = 1.0
_UNREACHABLE = 900
"""aiodocker's status for "cannot connect to the engine" (the socket is gone): the engine's
fault, never the model's."""


class _Tail:
    """The last ``cap`` bytes of a text stream (a build log is kept, truncated, for the result)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()
        self.truncated = False

    def add(self, text: str) -> None:
        self._buf += text.encode("utf-8", "replace")
        if len(self._buf) > self.cap:
            del self._buf[: len(self._buf) - self.cap]
            self.truncated = True

    def text(self) -> str:
        body = self._buf.decode("utf-8", "replace")
        return f"[... truncated ...]\n{body}" if self.truncated else body


class DockerEngine:
    """One engine (one socket). ``open()`` connects, sweeps and installs the firewall rules."""

    def __init__(
        self,
        *,
        url: str,
        owner: str,
        name: str = "default",
        kind: EngineKind = "podman",
        limits: SandboxLimits | None = None,
        bridge_prefix: str = "srbx",
        firewall: BridgeFirewall | None = None,
        build_network: str = "none",
        build_log_bytes: int = 64 * 1024,
        max_context_bytes: int = 20 * 1024**3,
        api_timeout_s: float = 60.0,
        reap_grace_s: float = 3600.0,
    ) -> None:
        if firewall is not None and firewall.prefix != bridge_prefix:
            raise ValueError("the firewall must cover the engine's bridge prefix")
        self._url = url
        self._owner = owner
        self._name = name
        self._kind = kind
        self._limits = limits or SandboxLimits()
        self._prefix = bridge_prefix
        self._firewall = firewall
        self._build_network = build_network
        self._build_log_bytes = build_log_bytes
        self._max_context = max_context_bytes
        self._api_timeout_s = api_timeout_s
        self._reap_grace_s = reap_grace_s
        self._docker: aiodocker.Docker | None = None
        self._networks: dict[str, str] = {}  # container id -> network name
        self._reapers: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return self._url

    def _labels(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_OWNER: self._owner}

    @property
    def _api(self) -> aiodocker.Docker:
        if self._docker is None:
            raise RuntimeError("DockerEngine is not open; call open() first")
        return self._docker

    async def _call(self, what: str, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._api_timeout_s):
                return await aw
        except TimeoutError:
            raise EngineError(
                f"engine {self._name}: {what} took over {self._api_timeout_s} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise EngineError(f"engine {self._name} ({self._url}): {what}: {exc}") from exc
        except DockerError as exc:
            if exc.status == _UNREACHABLE:
                raise EngineError(f"engine {self._name}: {what}: {exc.message}") from None
            raise

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._docker is not None:
            return
        self._docker = aiodocker.Docker(url=self._url)
        try:
            version = await self._call("version", self._docker.version())
            report = await self.sweep()
            if self._firewall is not None:
                await self._firewall.install()
        except BaseException:
            await self._docker.close()
            self._docker = None
            raise
        log.info(
            "sandbox.engine.opened",
            engine=self._name,
            url=self._url,
            version=version.get("Version"),
            swept=report.total,
        )

    async def aclose(self) -> None:
        for task in list(self._reapers):
            task.cancel()
        if self._reapers:
            await asyncio.gather(*self._reapers, return_exceptions=True)
        try:
            if self._firewall is not None:
                await self._firewall.remove()
        finally:
            if self._docker is not None:
                await self._docker.close()
                self._docker = None

    async def __aenter__(self) -> DockerEngine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.aclose())

    # -- build -----------------------------------------------------------------------------

    async def build(self, request: BuildRequest) -> BuiltImage:
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="soundsright-ctx-"))
        tail = _Tail(self._build_log_bytes)
        try:
            tar = tmp / "context.tar"
            await asyncio.to_thread(
                write_context_tar, request.context, tar, max_bytes=self._max_context
            )
            try:
                async with asyncio.timeout(request.timeout_s):
                    await self._stream_build(request, tar, tail)
            except TimeoutError:
                self._reap_abandoned(request.tag)
                raise BuildFailed(
                    "build_timeout",
                    f"the build did not finish within {request.timeout_s:g} s",
                    log=tail.text(),
                ) from None
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, tmp, True))
        info = await self._call("image inspect", self._api.images.inspect(request.tag))
        return BuiltImage(image_id=str(info["Id"]), tag=request.tag, log=tail.text())

    def _reap_abandoned(self, tag: str) -> None:
        """A build past its deadline: closing the request does not stop it (Podman 4.3 goes
        on building and then tags and labels the image), so watch for the tag and remove the
        image as soon as it appears, for up to ``reap_grace_s``. The engine owns these tasks;
        ``aclose`` cancels them (the next start-up sweep removes what a late build left)."""
        task = asyncio.create_task(self._reap(tag), name=f"reap {tag}")
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)

    async def _reap(self, tag: str) -> None:
        deadline = time.monotonic() + self._reap_grace_s
        while time.monotonic() < deadline:
            try:
                await self._call("image inspect", self._api.images.inspect(tag))
            except DockerError as exc:
                if exc.status != 404:
                    log.warning("sandbox.image.reap_failed", image=tag, error=str(exc.message))
            except EngineError as exc:
                log.warning("sandbox.image.reap_failed", image=tag, error=str(exc))
            else:
                await self.remove_image(tag)
                log.info("sandbox.image.reaped", image=tag)
                return
            await asyncio.sleep(_REAP_POLL_S)
        log.warning("sandbox.image.reap_gave_up", image=tag, after_s=self._reap_grace_s)

    async def _stream_build(self, request: BuildRequest, tar: Path, tail: _Tail) -> None:
        params = {
            "t": request.tag,
            "dockerfile": "Dockerfile",
            "rm": "true",
            "forcerm": "true",
            "pull": "false",
            "q": "false",
            "networkmode": self._build_network,
            "labels": json.dumps(request.labels),
        }
        error: str | None = None
        fh = await asyncio.to_thread(open, tar, "rb")
        try:
            async with self._api._query(
                "build",
                "POST",
                params=params,
                headers={"Content-Type": "application/x-tar"},
                data=fh,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._api_timeout_s),
            ) as resp:
                async for msg in _json_lines(resp):
                    if "stream" in msg:
                        tail.add(str(msg["stream"]))
                    if "error" in msg:
                        error = str(msg.get("error") or "build error")
                        tail.add(error + "\n")
        except DockerError as exc:
            if exc.status == _UNREACHABLE:
                raise EngineError(f"engine {self._name}: build: {exc.message}") from None
            raise BuildFailed("build_failed", str(exc.message), log=tail.text()) from None
        except aiohttp.ClientError as exc:
            raise EngineError(f"engine {self._name}: build: {exc}") from exc
        finally:
            await asyncio.to_thread(fh.close)
        if error is not None:
            raise BuildFailed("build_failed", error.strip()[-2000:], log=tail.text())

    # -- run -------------------------------------------------------------------------------

    async def start(self, request: RunRequest) -> RunningModel:
        suffix = unique_suffix()
        name = f"soundsright-{suffix}"
        labels = self._labels() | request.labels
        net_cfg = network_config(name, f"{self._prefix}{suffix}"[:15], labels)
        try:
            await self._call("network create", self._api.networks.create(net_cfg))
        except DockerError as exc:
            raise EngineError(f"engine {self._name}: network create: {exc.message}") from None
        container_id: str | None = None
        try:
            image = await self._call("image inspect", self._api.images.inspect(request.image))
            cfg = image.get("Config") or {}
            try:
                tmpfs = tmpfs_paths(
                    self._limits.extra_tmpfs,
                    sorted((cfg.get("Volumes") or {}).keys()),
                    (cfg.get("Labels") or {}).get(LABEL_TMPFS),
                )
            except ValueError as exc:
                raise StartFailed(str(exc)) from None
            body = container_config(
                image=str(image["Id"]),
                network=name,
                labels=labels,
                limits=self._limits,
                tmpfs=tmpfs,
                engine_kind=self._kind,
                gpu=request.gpu,
            )
            container = await self._call(
                "container create", self._api.containers.create(body, name=name)
            )
            container_id = str(container.id)
            self._networks[container_id] = name
            await self._call("container start", container.start())
            info = await self._call("container inspect", container.show())
            ip = str(info["NetworkSettings"]["Networks"][name].get("IPAddress") or "")
            if not ip or not info["State"].get("Running"):
                state = _state(info)
                tail = await self.logs_of(container_id, 2000)
                raise StartFailed(f"{state.describe()} at start; log tail: {tail[-500:]!r}")
        except DockerError as exc:
            await self._remove(container_id, name)
            raise StartFailed(str(exc.message)) from None
        except BaseException:
            await asyncio.shield(self._remove(container_id, name))
            raise
        log.info("sandbox.container.started", engine=self._name, container=name, ip=ip)
        return RunningModel(container_id=container_id, network_id=name, ip=ip, port=MODEL_PORT)

    async def state(self, model: RunningModel) -> ContainerState:
        try:
            container = self._api.containers.container(model.container_id)
            info = await self._call("container inspect", container.show())
        except DockerError as exc:
            return ContainerState(running=False, error=str(exc.message))
        return _state(info)

    async def logs(self, model: RunningModel) -> str:
        return await self.logs_of(model.container_id, self._limits.log_bytes)

    async def logs_of(self, container_id: str, max_bytes: int) -> str:
        try:
            container = self._api.containers.container(container_id)
            lines = await self._call(
                "container logs", container.log(stdout=True, stderr=True, tail=500)
            )
        except (DockerError, EngineError):
            return ""
        text = "".join(lines)
        return text[-max_bytes:]

    async def stop(self, model: RunningModel) -> None:
        await self._remove(model.container_id, model.network_id)

    async def _remove(self, container_id: str | None, network: str | None) -> None:
        if container_id is not None:
            try:
                container = self._api.containers.container(container_id)
                await self._call("container remove", container.delete(force=True, v=True))
            except DockerError as exc:
                if exc.status != 404:
                    log.warning("sandbox.container.remove_failed", error=str(exc.message))
            except EngineError as exc:
                log.warning("sandbox.container.remove_failed", error=str(exc))
            self._networks.pop(container_id, None)
        if network is not None:
            await self._remove_network(network)

    async def _remove_network(self, network: str) -> None:
        try:
            net = await self._call("network get", self._api.networks.get(network))
            await self._call("network remove", net.delete())
        except DockerError as exc:
            if exc.status != 404:
                log.warning("sandbox.network.remove_failed", network=network, error=exc.message)
        except EngineError as exc:
            log.warning("sandbox.network.remove_failed", network=network, error=str(exc))

    async def remove_image(self, image: str) -> None:
        try:
            await self._call("image remove", self._api.images.delete(image, force=True))
        except DockerError as exc:
            if exc.status != 404:
                log.warning("sandbox.image.remove_failed", image=image, error=str(exc.message))
        except EngineError as exc:
            log.warning("sandbox.image.remove_failed", image=image, error=str(exc))

    async def sweep(self) -> SweepReport:
        """Remove this owner's containers, networks and images (what a crash left behind)."""
        report = SweepReport()
        # One label in the server-side filter (Podman 4.3 ANDs several image labels wrongly);
        # the owner is checked here.
        wanted = {"label": [f"{LABEL_MANAGED}=true"]}

        def ours(labels: dict[str, str] | None) -> bool:
            return (labels or {}).get(LABEL_OWNER) == self._owner

        containers = await self._call(
            "container list", self._api.containers.list(all=True, filters=json.dumps(wanted))
        )
        for c in containers:
            if ours(c._container.get("Labels")):
                await self._remove(str(c.id), None)
                report.containers.append(str(c.id))
        networks = await self._call("network list", self._api.networks.list(filters=wanted))
        for n in networks:
            if ours(n.get("Labels")):
                await self._remove_network(str(n["Name"]))
                report.networks.append(str(n["Name"]))
        images = await self._call("image list", self._api.images.list(filters=wanted))
        for i in images:
            if ours(i.get("Labels")):
                await self.remove_image(str(i["Id"]))
                report.images.append(str(i["Id"]))
        if report.total:
            log.info(
                "sandbox.engine.swept",
                engine=self._name,
                **{
                    k: len(v)
                    for k, v in (
                        ("containers", report.containers),
                        ("networks", report.networks),
                        ("images", report.images),
                    )
                },
            )
        return report


def _state(info: dict[str, Any]) -> ContainerState:
    st = info.get("State") or {}
    running = bool(st.get("Running"))
    return ContainerState(
        running=running,
        exit_code=None if running else st.get("ExitCode"),
        oom_killed=bool(st.get("OOMKilled")),
        error=str(st.get("Error") or ""),
    )


async def _json_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The build stream's JSON objects; a line over 1 MiB is dropped, never buffered whole."""
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        buf += chunk
        while (nl := buf.find(b"\n")) >= 0:
            line, buf = bytes(buf[:nl]), buf[nl + 1 :]
            msg = _parse(line)
            if msg is not None:
                yield msg
        if len(buf) > _LINE_CAP:
            buf.clear()
    msg = _parse(bytes(buf))
    if msg is not None:
        yield msg


def _parse(line: bytes) -> dict[str, Any] | None:
    line = line.strip()
    if not line:
        return None
    try:
        msg = json.loads(line)
    except ValueError:
        return {"stream": line.decode("utf-8", "replace") + "\n"}
    return msg if isinstance(msg, dict) else None


if TYPE_CHECKING:

    def _is_an_engine(engine: DockerEngine) -> ContainerEngine:
        return engine  # mypy checks the adapter against the seam
