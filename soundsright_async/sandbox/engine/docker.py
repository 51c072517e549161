"""``DockerEngine``: the container engine over the Docker Engine API (aiodocker). Podman's
``podman system service`` serves the same API; ``kind="podman"`` only changes the log driver.

Every API call has a deadline. Everything created carries the project labels
(``soundsright.managed=true``, ``soundsright.owner=<owner>``) and cleanup selects on them, so
nothing else on the engine is ever touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

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
from .buildspec import BUILDER_IMAGE, BuildLimits
from .errors import UNREACHABLE, EngineError, StartFailed
from .firewall import BridgeFirewall
from .sandboxbuild import SandboxBuilder
from .seccomp import DEFAULT_BASE_PROFILE, deny_namespaces
from .spec import (
    BASE_IMAGE,
    LABEL_ENGINE,
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

__all__ = ["DockerEngine", "TlsFiles"]

log = structlog.get_logger(__name__)
T = TypeVar("T")
_LIST_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Mutual TLS to a ``tcp://`` engine, as Docker clients do it (``--tlsverify``): the CA
    that signed the engine's certificate, and this client's certificate and key (PEM)."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """Blocking (reads the files): call it in a thread."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


class DockerEngine:
    """One engine (one socket). ``open()`` connects, checks the engine is on this host, sweeps
    and installs the firewall rules."""

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
        build_network: Literal["none", "egress"] = "none",
        build_log_bytes: int = 64 * 1024,
        max_context_bytes: int = 20 * 1024**3,
        api_timeout_s: float = 60.0,
        seccomp_base: Path | None = Path(DEFAULT_BASE_PROFILE),
        sweep_owner: Callable[[str], bool] | None = None,
        builder_image: str = BUILDER_IMAGE,
        base_images: Sequence[str] = (BASE_IMAGE,),
        build_limits: BuildLimits | None = None,
        build_dns: Sequence[str] = (),
        build_dir: Path | None = None,
        tls: TlsFiles | None = None,
        host_check: bool = True,
    ) -> None:
        if firewall is not None and firewall.prefix != bridge_prefix:
            raise ValueError("the firewall must cover the engine's bridge prefix")
        self._url = url
        self._tls = tls
        self._host_check = host_check
        self._orphans: dict[str, str | None] = {}  # container id -> network: removal failed
        self._reaper: asyncio.Future[None] | None = None
        self._info: dict[str, Any] | None = None
        self._owner = owner
        self._name = name
        self._kind = kind
        self._limits = limits or SandboxLimits()
        self._prefix = bridge_prefix
        self._firewall = firewall
        self._api_timeout_s = api_timeout_s
        self._docker: aiodocker.Docker | None = None
        self._networks: dict[str, str] = {}  # container id -> network name
        self._seccomp_base = seccomp_base
        self._sweep_owner = sweep_owner
        self._seccomp: str | None = None  # what start() sends (see _load_seccomp)
        self._seccomp_dir: Path | None = None
        self._builder = SandboxBuilder(
            api=lambda: self._api,
            call=self._call,
            engine=name,
            kind=kind,
            labels=self._labels(),
            image=builder_image,
            base_images=base_images,
            limits=build_limits or BuildLimits(),
            network=build_network,
            bridge_prefix=bridge_prefix,
            dns=build_dns,
            work_dir=build_dir or Path(tempfile.gettempdir()) / f"soundsright-build-{os.getuid()}",
            log_bytes=build_log_bytes,
            max_context_bytes=max_context_bytes,
            api_timeout_s=api_timeout_s,
            orphan=self._orphan,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return self._url

    def _labels(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_OWNER: self._owner, LABEL_ENGINE: self._name}

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
            if exc.status == UNREACHABLE:
                raise EngineError(f"engine {self._name}: {what}: {exc.message}") from None
            raise

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._docker is not None:
            return
        self._docker = await self._connect()
        try:
            version = await self._call("version", self._docker.version())
            if self._host_check:
                await self._check_host()
            await self._load_seccomp()
            report = await self.sweep()
            if self._firewall is not None:
                await self._firewall.install()
        except BaseException:
            await self._docker.close()
            self._docker = None
            self._info = None
            await asyncio.to_thread(self._drop_seccomp)
            raise
        log.info(
            "sandbox.engine.opened",
            engine=self._name,
            url=self._url,
            version=version.get("Version"),
            swept=report.total,
        )

    async def _connect(self) -> aiodocker.Docker:
        if self._tls is None:
            return aiodocker.Docker(url=self._url)
        try:
            ctx = await asyncio.to_thread(self._tls.context)
        except (OSError, ssl.SSLError) as exc:
            raise EngineError(f"engine {self._name}: TLS files: {exc}") from None
        host = self._url.split("://", 1)[1]
        return aiodocker.Docker(url=f"https://{host}", ssl_context=ctx)

    async def _check_host(self) -> None:
        """Builds bind-mount this host's build directory into the builder and models are
        reached at their bridge address: an engine on another host cannot run either."""
        info = await self._host_info()
        theirs, ours = str(info.get("Name") or ""), socket.gethostname()
        if theirs and theirs != ours:
            raise EngineError(
                f"engine {self._name} ({self._url}) runs on host {theirs!r}, not on this host "
                f"({ours!r}): builds bind-mount this host's build directory and models are "
                "reached at their bridge address, so engines must be on the validator's host "
                "(docs/sandbox.md, 'Several engines'); if it is this host seen from a container, "
                "set host_check = false on the engine"
            )

    def _orphan(self, container_id: str | None, network: str | None) -> None:
        """A removal the engine failed (it went away): done again once it answers."""
        self._orphans[container_id or f"network:{network}"] = network

    async def ping(self) -> None:
        """``EngineError`` unless the engine answers; then what it failed to remove while it
        was away is removed in the background (``_reap``)."""
        await self._call("ping", self._api.version())
        if self._orphans and (self._reaper is None or self._reaper.done()):
            self._reaper = asyncio.ensure_future(self._reap())

    async def _reap(self, attempts: int = 5) -> None:
        """Remove the orphans; one the engine refuses for now (Podman: a killed service's
        container whose ``shm`` is still busy) is tried again after a pause."""
        for attempt in range(attempts):
            for key in list(self._orphans):
                network = self._orphans.pop(key)
                try:
                    if key.startswith("image:"):
                        await self._call(
                            "image remove",
                            self._api.images.delete(key.removeprefix("image:"), force=True),
                        )
                    elif not key.startswith("network:"):
                        c = self._api.containers.container(key)
                        await self._call("container remove", c.delete(force=True, v=True))
                except DockerError as exc:
                    if exc.status != 404:
                        self._orphans[key] = network
                        continue
                except EngineError:
                    self._orphans[key] = network
                    return  # away again: the next ping that finds it back starts over
                if network is not None:
                    await self._remove_network(network)
                log.info("sandbox.engine.orphan_removed", engine=self._name, what=key)
            if not self._orphans:
                return
            await asyncio.sleep(1.0 + attempt)
        log.warning(
            "sandbox.engine.orphans_left",
            engine=self._name,
            left=sorted(self._orphans),
            hint="the closing sweep or the next start-up sweep removes them",
        )

    async def aclose(self) -> None:
        if self._reaper is not None and not self._reaper.done():
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        try:
            if self._docker is not None:
                # Whatever of ours is still there at close (a builder or model container whose
                # cancelled run could not finish its removal) goes now, not at the next start.
                try:
                    async with asyncio.timeout(30.0):
                        await self.sweep(images=False)
                except Exception as exc:  # the engine is gone: the next start-up sweep cleans
                    log.warning(
                        "sandbox.engine.closing_sweep_failed", engine=self._name, error=str(exc)
                    )
            if self._firewall is not None:
                await self._firewall.remove()
        finally:
            await asyncio.to_thread(self._drop_seccomp)
            if self._docker is not None:
                await self._docker.close()
                self._docker = None
                self._info = None

    async def _load_seccomp(self) -> None:
        """Model containers get the base profile with new namespaces denied (``seccomp``).
        Podman's compat API takes a path (read at container create), Docker the JSON text."""
        if self._seccomp_base is None:
            return
        base = self._seccomp_base
        try:
            text = await asyncio.to_thread(base.read_text)
            profile = json.dumps(deny_namespaces(json.loads(text)))
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"seccomp base profile {base}: {exc}; model containers need it to deny user "
                "namespaces (set sandbox.seccomp_base to the engine's default profile, or "
                'sandbox.seccomp_base = "" to keep the engine\'s default and allow them)'
            ) from None
        if self._kind == "docker":
            self._seccomp = profile
            return
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="soundsright-seccomp-"))
        self._seccomp_dir = tmp
        path = tmp / "model.json"
        await asyncio.to_thread(path.write_text, profile)
        await asyncio.to_thread(tmp.chmod, 0o755)
        self._seccomp = str(path)

    def _drop_seccomp(self) -> None:
        if self._seccomp_dir is not None:
            shutil.rmtree(self._seccomp_dir, ignore_errors=True)
            self._seccomp_dir = None
        self._seccomp = None

    async def __aenter__(self) -> DockerEngine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.aclose())

    async def host_resources(self) -> tuple[int, int]:
        """``(memory bytes, CPUs)`` of the engine's host (``GET /info``)."""
        info = await self._host_info()
        return int(info.get("MemTotal") or 0), int(info.get("NCPU") or 0)

    async def _host_info(self) -> dict[str, Any]:
        """``GET /info``, once per open (the start-up host check and the limits both read it)."""
        if self._info is None:
            self._info = dict(await self._call("info", self._api.system.info()))
        return self._info

    @property
    def limits(self) -> SandboxLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: SandboxLimits) -> None:
        """Containers started from now on get ``limits`` (set after ``host_resources``)."""
        self._limits = limits

    # -- build -----------------------------------------------------------------------------

    async def build(self, request: BuildRequest) -> BuiltImage:
        """Build in a throwaway locked-down builder container (``sandboxbuild``); a refused
        Dockerfile, a failed step or the deadline raise ``BuildFailed``."""
        return await self._builder.build(request)

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
                seccomp=self._seccomp,
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
                self._orphan(container_id, network)
                return
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
            self._orphan(None, network)

    async def remove_image(self, image: str) -> None:
        try:
            await self._call("image remove", self._api.images.delete(image, force=True))
        except DockerError as exc:
            if exc.status != 404:
                log.warning("sandbox.image.remove_failed", image=image, error=str(exc.message))
        except EngineError as exc:
            log.warning("sandbox.image.remove_failed", image=image, error=str(exc))
            self._orphans[f"image:{image}"] = None

    async def _listing(self, what: str, list_call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(_LIST_ATTEMPTS):
            try:
                return await self._call(what, list_call())
            except DockerError as exc:
                if attempt + 1 == _LIST_ATTEMPTS or not _retry_listing(exc):
                    raise EngineError(f"engine {self._name}: {what}: {exc.message}") from None
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def sweep(self, *, images: bool = True) -> SweepReport:
        """Remove this owner's containers, networks and (with ``images``) images: what a crash
        left behind; and those of the owners ``sweep_owner`` accepts."""
        report = SweepReport()
        # One label in the server-side filter (Podman 4.3 ANDs several image labels wrongly);
        # the owner is checked here.
        wanted = {"label": [f"{LABEL_MANAGED}=true"]}

        def ours(labels: dict[str, str] | None) -> bool:
            engine = (labels or {}).get(LABEL_ENGINE)
            if engine is not None and engine != self._name:
                return False  # another engine's (two services sharing one storage)
            owner = (labels or {}).get(LABEL_OWNER)
            if owner == self._owner:
                return True
            return owner is not None and self._sweep_owner is not None and self._sweep_owner(owner)

        containers = await self._listing(
            "container list",
            lambda: self._api.containers.list(all=True, filters=json.dumps(wanted)),
        )
        for c in containers:
            if ours(c._container.get("Labels")):
                await self._remove(str(c.id), None)
                report.containers.append(str(c.id))
        networks = await self._listing(
            "network list", lambda: self._api.networks.list(filters=wanted)
        )
        for n in networks:
            if ours(n.get("Labels")):
                await self._remove_network(str(n["Name"]))
                report.networks.append(str(n["Name"]))
        listed = (
            await self._listing("image list", lambda: self._api.images.list(filters=wanted))
            if images
            else []
        )
        for i in listed:
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


def _retry_listing(exc: DockerError) -> bool:
    """Podman fails a whole listing when another client removes an item while it is listed
    ("image not known", "no such container"): a shared engine is busy, so list again."""
    return exc.status in (404, 500) and ("not known" in str(exc) or "no such" in str(exc))


def _state(info: dict[str, Any]) -> ContainerState:
    """``OOMKilled`` as the engine says, or inferred from exit code 137 (SIGKILL): Podman 4.3
    on cgroup v1 reports ``OOMKilled: false`` for a memory-limit kill (checked), and nothing
    else SIGKILLs a model's PID 1 while it runs (the runner stops containers only after the
    steps; the pids limit refuses forks; a namespace's init cannot be SIGKILLed from inside)."""
    st = info.get("State") or {}
    running = bool(st.get("Running"))
    code = None if running else st.get("ExitCode")
    return ContainerState(
        running=running,
        exit_code=code,
        oom_killed=bool(st.get("OOMKilled")) or code == 137,
        error=str(st.get("Error") or ""),
    )


if TYPE_CHECKING:

    def _is_an_engine(engine: DockerEngine) -> ContainerEngine:
        return engine  # mypy checks the adapter against the seam
