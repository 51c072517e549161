"""``SandboxBuilder``: build a model image inside a throwaway, locked-down builder container
(``buildspec``), then load the result into the engine (docs/sandbox.md, "Builds").

1. The ``Dockerfile`` is checked first (``dockerfile.check_dockerfile``): URLs and images
   outside the allow-list are refused with a reason before anything runs.
2. The base images it names are in the builder image's read-only image store (label
   ``soundsright.builder.bases``, ``make base-image``), used as overlay lower layers; each is
   also exported once to an archive (cached by image id) that the builder imports when the
   image is not in its store or the kernel cannot give it overlay (vfs then).
3. The context goes in as one tar file; the builder (own user namespace, no network, limits,
   tmpfs storage) runs ``buildah bud`` through ``exec`` and writes the image as an OCI layout
   into its tmpfs, with the base images' layers as empty placeholders; the engine copies it
   out (``GET /containers/{id}/archive``), turns it into a docker-archive naming exactly the
   requested tag, with only the build's own layers and placeholders only for the layers of
   the allowed base images it names (which the engine has), and loads it
   (``POST /images/load``, which checks every layer it reads against the config's diff ids).
4. Whatever happens (failure, deadline, cancellation) the builder container, its network and
   the work files are removed: every process of the build dies with the container, and stage
   images only ever existed in the builder's tmpfs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
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
    LABEL_BASES,
    STORE,
    BuildLimits,
    build_command,
    builder_compat_config,
    builder_libpod_spec,
)
from .context import write_context_tar
from .dockerfile import check_dockerfile
from .errors import UNREACHABLE, BuildFailed, EngineError
from .spec import EngineKind, network_config, unique_suffix

__all__ = ["SandboxBuilder"]

log = structlog.get_logger(__name__)
T = TypeVar("T")
Call = Callable[[str, Awaitable[Any]], Awaitable[Any]]
_LINE_CAP = 1 << 20
_MAX_DOCKERFILE = 1 << 20
_MAX_JSON = 8 << 20
_HEX = re.compile(r"[0-9a-f]{64}")
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
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
        archives, base_layers = await self._base_sources(bases)
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
            await self._load(tmp / "out.tar", request.tag, base_layers, tail)
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
        except DockerError as exc:
            if exc.status == 404:
                raise EngineError(
                    f"engine {self._engine}: builder image {self._image} is missing "
                    "(make base-image builds it)"
                ) from None
            raise EngineError(f"engine {self._engine}: builder: {exc.message}") from None
        try:
            await self._call("builder start", container.start())
        except BaseException as exc:
            # created but not started (or the engine went away meanwhile): remove it now, or
            # once the engine answers again
            await asyncio.shield(self._remove(container, None))
            if isinstance(exc, DockerError):
                raise EngineError(f"engine {self._engine}: builder: {exc.message}") from None
            raise
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
        """Copy the image (an OCI layout) out of the builder's tmpfs (bounded by its size)."""
        outer = tmp / "out.tar"
        cap = self._limits.disk_bytes + (1 << 20)
        fh = await asyncio.to_thread(open, outer, "wb")
        try:
            async with self._api()._query(
                f"containers/{container.id}/archive",
                params={"path": f"{STORE}/out/oci"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._api_timeout_s),
            ) as resp:
                written = 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    written += len(chunk)
                    if written > cap:
                        raise BuildFailed("build_failed", "the image archive is too large")
                    await asyncio.to_thread(fh.write, chunk)
        except DockerError as exc:
            if exc.status == UNREACHABLE:  # the engine is gone, not the model's archive
                raise EngineError(f"engine {self._engine}: image archive: {exc.message}") from None
            raise BuildFailed("build_failed", f"no image archive: {exc.message}") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise EngineError(f"engine {self._engine}: image archive: {exc!r}") from None
        finally:
            await asyncio.to_thread(fh.close)

    async def _load(self, outer: Path, tag: str, base_layers: frozenset[str], tail: Tail) -> None:
        """Load the OCI layout held in ``outer`` (the archive endpoint's tar of it) as a
        docker-archive streamed from its place in that file (``_docker_archive``)."""
        members = await asyncio.to_thread(_docker_archive, outer, tag, base_layers)
        fh = await asyncio.to_thread(open, outer, "rb")

        async def body() -> AsyncIterator[bytes]:
            for info, data in members:
                yield info.tobuf(format=tarfile.PAX_FORMAT)
                if isinstance(data, bytes):
                    yield data
                else:
                    await asyncio.to_thread(fh.seek, data[0])
                    left = data[1]
                    while left > 0:
                        chunk = await asyncio.to_thread(fh.read, min(left, 1 << 20))
                        if not chunk:
                            raise BuildFailed("build_failed", "the image archive is truncated")
                        left -= len(chunk)
                        yield chunk
                if info.size % tarfile.BLOCKSIZE:
                    yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
            yield b"\0" * (2 * tarfile.BLOCKSIZE)

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
            if exc.status == UNREACHABLE:  # the engine is gone, not the model's image
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

    async def _baked(self) -> frozenset[str]:
        """Ids of the images in the builder image's own read-only store (its label)."""
        try:
            info = await self._call("image inspect", self._api().images.inspect(self._image))
        except DockerError:
            return frozenset()  # the builder's create says it is missing
        labels = (info.get("Config") or {}).get("Labels") or {}
        ids = str(labels.get(LABEL_BASES) or "").split(",")
        return frozenset(i.strip().removeprefix("sha256:") for i in ids if i.strip())

    async def _base_sources(self, bases: Sequence[str]) -> tuple[dict[str, str], frozenset[str]]:
        """``({source: image name}, the base images' layer diff ids)``: a source is the base
        image's archive file name (each exported once per image id), with ``=ID`` when the
        builder's own store has that image (the archive is then only the fallback for a
        kernel where the builder cannot use overlay)."""
        out: dict[str, str] = {}
        layers: set[str] = set()
        baked = await self._baked() if bases else frozenset()
        async with self._archive_lock:
            await asyncio.to_thread(_mkdir, self._images_dir)
            for name in bases:
                try:
                    info = await self._call("image inspect", self._api().images.inspect(name))
                except DockerError:
                    raise BuildFailed(
                        "build_failed", f"base image {name} is not on engine {self._engine}"
                    ) from None
                image_id = str(info["Id"]).removeprefix("sha256:")
                layers.update(str(d) for d in (info.get("RootFS") or {}).get("Layers") or [])
                file = f"{image_id[:32]}.tar"
                path = self._images_dir / file
                if not await asyncio.to_thread(path.exists):
                    await self._save(name, path)
                out[f"{file}={image_id}" if image_id in baked else file] = name
        return out, frozenset(layers)

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


Member = tuple[tarfile.TarInfo, bytes | tuple[int, int]]
"""A docker-archive member: its header and its data (bytes, or ``(offset, size)`` in the
exported file)."""


def _docker_archive(outer: Path, tag: str, base_layers: frozenset[str]) -> list[Member]:
    """The docker-archive to load, from the OCI layout in ``outer``: ``manifest.json`` naming
    exactly ``tag``, the config, the build's own layers from their place in ``outer``, and an
    empty placeholder for a layer only if its diff id is one of ``base_layers`` (the allowed
    base images the Dockerfile names, which the engine has; it is then reused, never read).
    Any other layer must be there: the engine checks each layer it reads (decompressed)
    against the config's diff id, and the config's digest is the image id."""
    try:
        with tarfile.open(outer, "r:") as tar:
            files = {
                m.name.removeprefix("./"): (m.offset_data, m.size)
                for m in tar.getmembers()
                if m.isfile()
            }
        with open(outer, "rb") as fh:

            def read(name: str) -> bytes:
                if name not in files or files[name][1] > _MAX_JSON:
                    raise BuildFailed("build_failed", f"the image has no readable {name}")
                fh.seek(files[name][0])
                return fh.read(files[name][1])

            def blob(digest: object) -> str:
                algo, _, hexa = str(digest).partition(":")
                if algo != "sha256" or not _HEX.fullmatch(hexa):
                    raise BuildFailed("build_failed", f"the image names a bad digest {digest!r}")
                return f"oci/blobs/sha256/{hexa}"

            index = json.loads(read("oci/index.json"))
            (entry,) = index["manifests"]
            manifest = json.loads(read(blob(entry["digest"])))
            if manifest.get("mediaType", _OCI_MANIFEST) != _OCI_MANIFEST:
                raise BuildFailed("build_failed", "the image is not an OCI image")
            config_name = blob(manifest["config"]["digest"])
            config = read(config_name)
            diff_ids = [str(d) for d in json.loads(config)["rootfs"]["diff_ids"]]
            layers = [blob(layer["digest"]) for layer in manifest["layers"]]
    except BuildFailed:
        raise
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BuildFailed("build_failed", f"the image archive is unreadable: {exc}") from None
    if len(diff_ids) != len(layers):
        raise BuildFailed("build_failed", "the image's config and manifest disagree")

    def header(name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        return info

    config_file = f"{config_name.rsplit('/', 1)[1]}.json"
    members: list[Member] = [(header(config_file, len(config)), config)]
    names = []
    for i, (diff_id, layer) in enumerate(zip(diff_ids, layers, strict=True)):
        name = f"layer-{i}.tar"
        names.append(name)
        if diff_id in base_layers:
            members.append((header(name, 0), b""))
        elif layer in files:
            members.append((header(name, files[layer][1]), files[layer]))
        else:
            raise BuildFailed("build_failed", f"the image lacks its layer {diff_id}")
    top = [{"Config": config_file, "RepoTags": [tag], "Layers": names}]
    data = json.dumps(top).encode()
    members.append((header("manifest.json", len(data)), data))
    return members


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
