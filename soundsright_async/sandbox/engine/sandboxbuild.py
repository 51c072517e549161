"""``SandboxBuilder``: build a model image inside a throwaway, locked-down builder container
(``buildspec``), then load the result into the engine (docs/sandbox.md, "Builds").

1. The ``Dockerfile`` is checked first (``dockerfile.check_dockerfile``): URLs and images
   outside the allow-list are refused with a reason before anything runs.
2. The base images it names are exported once to archives (cached by image id).
3. The context goes in as one tar file; the builder (own user namespace, no network, limits,
   tmpfs storage) runs ``buildah bud`` through ``exec`` and writes a docker-archive into its
   tmpfs; the engine copies it out (``GET /containers/{id}/archive``), checks that it names
   exactly the requested tag, and loads it (``POST /images/load``).
4. Whatever happens (failure, deadline, cancellation) the builder container, its network and
   the work files are removed: every process of the build dies with the container, and stage
   images only ever existed in the builder's tmpfs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import aiodocker
import aiohttp
import structlog
from aiodocker.exceptions import DockerError

from .base import BuildRequest, BuiltImage
from .buildspec import (
    STORE,
    BuildLimits,
    build_command,
    builder_compat_config,
    builder_libpod_spec,
)
from .context import write_context_tar
from .dockerfile import check_dockerfile
from .errors import BuildFailed, EngineError
from .spec import EngineKind, network_config, unique_suffix

__all__ = ["SandboxBuilder"]

log = structlog.get_logger(__name__)
T = TypeVar("T")
Call = Callable[[str, Awaitable[Any]], Awaitable[Any]]
_LINE_CAP = 1 << 20
_MAX_DOCKERFILE = 1 << 20
_UNREACHABLE = 900  # aiodocker: cannot connect to the engine (as in engine.docker)
LABEL_ROLE = "soundsright.role"


class Tail:
    """The last ``cap`` bytes of a text stream (a build log is kept, truncated, for the result)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()
        self.truncated = False

    def add(self, data: bytes | str) -> None:
        self._buf += data.encode("utf-8", "replace") if isinstance(data, str) else data
        if len(self._buf) > self.cap:
            del self._buf[: len(self._buf) - self.cap]
            self.truncated = True

    def text(self) -> str:
        body = self._buf.decode("utf-8", "replace")
        return f"[... truncated ...]\n{body}" if self.truncated else body


class SandboxBuilder:
    """Builds for one engine. ``api`` returns the open aiodocker client; ``call`` wraps one API
    call in the engine's deadline and error translation."""

    def __init__(
        self,
        *,
        api: Callable[[], aiodocker.Docker],
        call: Call,
        engine: str,
        kind: EngineKind,
        labels: dict[str, str],
        image: str,
        base_images: Sequence[str],
        limits: BuildLimits,
        network: Literal["none", "egress"],
        bridge_prefix: str,
        dns: Sequence[str],
        work_dir: Path,
        log_bytes: int,
        max_context_bytes: int,
        api_timeout_s: float,
        orphan: Callable[[str | None, str | None], None] = lambda container, network: None,
    ) -> None:
        self._api = api
        self._orphan = orphan
        self._call = call
        self._engine = engine
        self._kind = kind
        self._labels = labels | {LABEL_ROLE: "builder"}
        self._image = image
        self._bases = tuple(base_images)
        self._limits = limits
        self._network = network
        self._prefix = bridge_prefix
        self._dns = tuple(dns)
        self._work = work_dir
        self._log_bytes = log_bytes
        self._max_context = max_context_bytes
        self._api_timeout_s = api_timeout_s
        self._archive_lock = asyncio.Lock()

    # -- one build -------------------------------------------------------------------------

    async def build(self, request: BuildRequest) -> BuiltImage:
        text = await asyncio.to_thread(_read_dockerfile, request.context)
        bases = check_dockerfile(text, self._bases)
        tail = Tail(self._log_bytes)
        archives = await self._base_archives(bases)
        marks = [("begin", time.monotonic())]
        tmp = Path(await asyncio.to_thread(_mkdtemp, self._work))
        container: aiodocker.docker.DockerContainer | None = None
        network: str | None = None
        removal: asyncio.Future[None] | None = None
        try:
            await asyncio.to_thread(
                write_context_tar,
                request.context,
                tmp / "in/context.tar",
                max_bytes=self._max_context,
            )
            try:
                async with asyncio.timeout(request.timeout_s):
                    network = await self._create_network()
                    container = await self._create(tmp / "in", network)
                    marks.append(("start", time.monotonic()))
                    await self._run(container, request, archives, tail)
                    marks.append(("build", time.monotonic()))
                    await self._export(container, tmp)
                    marks.append(("export", time.monotonic()))
            except TimeoutError:
                raise BuildFailed(
                    "build_timeout",
                    f"the build did not finish within {request.timeout_s:g} s",
                    log=tail.text(),
                ) from None
            finally:
                # kill and remove the builder now (it ends every process of the build), while
                # the image loads
                removal = asyncio.ensure_future(self._remove(container, network))
            await self._load(tmp / "out.tar", request.tag, tail)
            marks.append(("load", time.monotonic()))
        finally:
            if removal is not None:
                await asyncio.shield(removal)
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, tmp, True))
        info = await self._call("image inspect", self._api().images.inspect(request.tag))
        log.info(
            "sandbox.build.finished",
            engine=self._engine,
            image=request.tag,
            **{
                f"{name}_s": round(t - prev, 2)
                for (_, prev), (name, t) in itertools.pairwise(marks)
            },
        )
        return BuiltImage(image_id=str(info["Id"]), tag=request.tag, log=tail.text())

    async def _create_network(self) -> str | None:
        if self._network == "none":
            return None
        suffix = unique_suffix()
        name = f"soundsright-build-{suffix}"
        cfg = network_config(name, f"{self._prefix}{suffix}"[:15], self._labels)
        cfg["Internal"] = False  # egress, but the host firewall pair drops traffic to the host
        try:
            await self._call("network create", self._api().networks.create(cfg))
        except DockerError as exc:
            raise EngineError(f"engine {self._engine}: network create: {exc.message}") from None
        return name

    async def _create(self, in_dir: Path, network: str | None) -> aiodocker.docker.DockerContainer:
        api = self._api()
        name = f"soundsright-build-{unique_suffix()}"
        try:
            if self._kind == "podman":
                spec = builder_libpod_spec(
                    name=name,
                    image=self._image,
                    labels=self._labels,
                    limits=self._limits,
                    in_dir=str(in_dir),
                    images_dir=str(self._images_dir),
                    uid_offset=secrets.randbelow(1024),
                    network=network,
                    dns=self._dns,
                )
                created = await self._call(
                    "builder create",
                    api._query_json("libpod/containers/create", "POST", data=json.dumps(spec)),
                )
                container = api.containers.container(str(created["Id"]))
            else:
                cfg = builder_compat_config(
                    image=self._image,
                    labels=self._labels,
                    limits=self._limits,
                    in_dir=str(in_dir),
                    images_dir=str(self._images_dir),
                    network=network,
                    dns=self._dns,
                )
                container = await self._call(
                    "builder create", api.containers.create(cfg, name=name)
                )
            await self._call("builder start", container.start())
        except DockerError as exc:
            if exc.status == 404:
                raise EngineError(
                    f"engine {self._engine}: builder image {self._image} is missing "
                    "(make base-image builds it)"
                ) from None
            raise EngineError(f"engine {self._engine}: builder: {exc.message}") from None
        return container

    async def _run(
        self,
        container: aiodocker.docker.DockerContainer,
        request: BuildRequest,
        archives: dict[str, str],
        tail: Tail,
    ) -> None:
        argv = build_command(request.tag, archives, request.labels)
        try:
            exe = await self._call("builder exec", container.exec(argv, stdout=True, stderr=True))
            async with exe.start(detach=False) as stream:
                while (msg := await stream.read_out()) is not None:
                    tail.add(msg.data)
            info = await self._call("exec inspect", exe.inspect())
        except DockerError as exc:
            raise EngineError(f"engine {self._engine}: builder exec: {exc.message}") from None
        except (aiohttp.ClientError, ConnectionError) as exc:  # the engine went away mid-build
            raise EngineError(f"engine {self._engine}: builder exec: {exc!r}") from None
        code = info.get("ExitCode")
        if code != 0:
            last = [ln for ln in tail.text().splitlines() if ln.strip()][-1:] or ["no output"]
            raise BuildFailed(
                "build_failed", f"the build exited with {code}: {last[0][-500:]}", log=tail.text()
            )

    async def _export(self, container: aiodocker.docker.DockerContainer, tmp: Path) -> None:
        """Copy the image archive out of the builder's tmpfs (bounded by the tmpfs size)."""
        outer = tmp / "out.tar"
        cap = self._limits.disk_bytes + (1 << 20)
        fh = await asyncio.to_thread(open, outer, "wb")
        try:
            async with self._api()._query(
                f"containers/{container.id}/archive",
                params={"path": f"{STORE}/out/img.tar"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._api_timeout_s),
            ) as resp:
                written = 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    written += len(chunk)
                    if written > cap:
                        raise BuildFailed("build_failed", "the image archive is too large")
                    await asyncio.to_thread(fh.write, chunk)
        except DockerError as exc:
            if exc.status == _UNREACHABLE:  # the engine is gone, not the model's archive
                raise EngineError(f"engine {self._engine}: image archive: {exc.message}") from None
            raise BuildFailed("build_failed", f"no image archive: {exc.message}") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise EngineError(f"engine {self._engine}: image archive: {exc!r}") from None
        finally:
            await asyncio.to_thread(fh.close)

    async def _load(self, outer: Path, tag: str, tail: Tail) -> None:
        """Load the docker-archive held in ``outer`` (the archive endpoint's tar around it)
        straight from its place in that file, after checking what it would tag."""
        offset, size = await asyncio.to_thread(_check_archive, outer, tag)
        fh = await asyncio.to_thread(open, outer, "rb")

        async def body() -> AsyncIterator[bytes]:
            await asyncio.to_thread(fh.seek, offset)
            left = size
            while left > 0:
                chunk = await asyncio.to_thread(fh.read, min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

        try:
            async with asyncio.timeout(max(self._api_timeout_s, 600.0)):
                async with self._api()._query(
                    "images/load",
                    "POST",
                    data=body(),
                    headers={"Content-Type": "application/x-tar"},
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._api_timeout_s),
                ) as resp:
                    async for msg in _json_lines(resp):
                        if "error" in msg:
                            raise BuildFailed("build_failed", f"load: {msg['error']}")
        except TimeoutError:
            raise EngineError(f"engine {self._engine}: image load timed out") from None
        except DockerError as exc:
            if exc.status == _UNREACHABLE:  # the engine is gone, not the model's image
                raise EngineError(f"engine {self._engine}: image load: {exc.message}") from None
            raise BuildFailed("build_failed", f"load: {exc.message}", log=tail.text()) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise EngineError(f"engine {self._engine}: image load: {exc!r}") from None
        finally:
            await asyncio.to_thread(fh.close)

    async def _remove(
        self, container: aiodocker.docker.DockerContainer | None, network: str | None
    ) -> None:
        """Kill and remove the builder (every process of the build goes with it)."""
        if container is not None:
            try:
                await self._call("builder remove", container.delete(force=True, v=True))
            except DockerError as exc:
                if exc.status != 404:
                    log.warning("sandbox.builder.remove_failed", error=str(exc.message))
            except EngineError as exc:
                log.warning("sandbox.builder.remove_failed", error=str(exc))
                self._orphan(str(container.id), network)  # removed when the engine answers
                return
        if network is not None:
            try:
                net = await self._call("network get", self._api().networks.get(network))
                await self._call("network remove", net.delete())
            except DockerError as exc:
                log.warning("sandbox.network.remove_failed", network=network, error=str(exc))
            except EngineError as exc:
                log.warning("sandbox.network.remove_failed", network=network, error=str(exc))
                self._orphan(None, network)

    # -- base images -----------------------------------------------------------------------

    @property
    def _images_dir(self) -> Path:
        return self._work / "images"

    async def _base_archives(self, bases: Sequence[str]) -> dict[str, str]:
        """``{archive file name: image name}``, exporting each base image once per image id."""
        out: dict[str, str] = {}
        async with self._archive_lock:
            await asyncio.to_thread(_mkdir, self._images_dir)
            for name in bases:
                try:
                    info = await self._call("image inspect", self._api().images.inspect(name))
                except DockerError:
                    raise BuildFailed(
                        "build_failed", f"base image {name} is not on engine {self._engine}"
                    ) from None
                file = f"{str(info['Id']).removeprefix('sha256:')[:32]}.tar"
                path = self._images_dir / file
                if not await asyncio.to_thread(path.exists):
                    await self._save(name, path)
                out[file] = name
        return out

    async def _save(self, name: str, path: Path) -> None:
        part = path.with_suffix(f".{unique_suffix()}.part")
        fh = await asyncio.to_thread(open, part, "wb")
        try:
            async with asyncio.timeout(max(self._api_timeout_s, 600.0)):
                async with self._api()._query(
                    f"images/{name}/get",
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._api_timeout_s),
                ) as resp:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        await asyncio.to_thread(fh.write, chunk)
            await asyncio.to_thread(fh.close)
            await asyncio.to_thread(os.chmod, part, 0o644)
            await asyncio.to_thread(os.replace, part, path)
        except (TimeoutError, DockerError) as exc:
            raise EngineError(f"engine {self._engine}: exporting {name}: {exc}") from None
        finally:
            await asyncio.shield(asyncio.to_thread(_close_and_drop, fh, part))
        log.info("sandbox.builder.base_exported", image=name, archive=str(path))
        # an archive of an image id the name no longer points at is stale: drop it
        stale = await asyncio.to_thread(_stale_archives, self._images_dir, path, name)
        if stale:
            log.info("sandbox.builder.base_archives_dropped", files=stale)


def _close_and_drop(fh: BinaryIO, part: Path) -> None:
    fh.close()
    part.unlink(missing_ok=True)


def _stale_archives(images_dir: Path, current: Path, name: str) -> list[str]:
    """Remove the other archives exported for ``name`` (recorded in ``NAME.tar.name``)."""
    dropped = []
    current.with_suffix(".name").write_text(name)
    for marker in images_dir.glob("*.name"):
        archive = marker.with_suffix(".tar")
        if archive != current and marker.read_text() == name:
            archive.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            dropped.append(archive.name)
    return dropped


def _read_dockerfile(context: Path) -> str:
    path = context / "Dockerfile"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        raise BuildFailed("build_failed", "the repository has no Dockerfile at its root") from None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(_MAX_DOCKERFILE + 1)
    if len(data) > _MAX_DOCKERFILE:
        raise BuildFailed("build_refused", "the Dockerfile is over 1 MiB")
    return data.decode("utf-8", "replace")


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)


def _mkdtemp(work: Path) -> str:
    _mkdir(work)
    tmp = tempfile.mkdtemp(prefix="build-", dir=work)
    os.chmod(tmp, 0o755)  # the builder's root is an unprivileged host uid: it reads "other"
    os.mkdir(os.path.join(tmp, "in"), 0o755)
    return tmp


def _check_archive(outer: Path, tag: str) -> tuple[int, int]:
    """``(offset, size)`` of the docker-archive inside ``outer``. Refuses one that would name
    any image but ``tag`` (a build could otherwise leave its own archive behind and retag,
    say, the base image on the engine)."""
    try:
        with tarfile.open(outer, "r:") as wrapper:
            members = wrapper.getmembers()
            if len(members) != 1 or not members[0].isfile():
                raise BuildFailed("build_failed", "the builder returned no image archive")
            offset, size = members[0].offset_data, members[0].size
        with open(outer, "rb") as fh:
            fh.seek(offset)
            with tarfile.open(fileobj=fh, mode="r:") as tar:
                names = set(tar.getnames())
                if names & {"index.json", "oci-layout"} or "manifest.json" not in names:
                    raise BuildFailed("build_failed", "the image archive is not a docker-archive")
                mf = tar.extractfile("manifest.json")
                assert mf is not None
                manifest = json.loads(mf.read(1 << 20))
    except (tarfile.TarError, ValueError, KeyError) as exc:
        raise BuildFailed("build_failed", f"the image archive is unreadable: {exc}") from None
    if not isinstance(manifest, list) or len(manifest) != 1 or manifest[0].get("RepoTags") != [tag]:
        raise BuildFailed("build_failed", "the image archive does not hold exactly the model")
    return offset, size


async def _json_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """A JSON-lines response's objects; a line over 1 MiB is dropped, never buffered whole."""
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
