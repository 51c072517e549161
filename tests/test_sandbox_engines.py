"""Several container engines for real: the shared Podman service and a second Podman service of
this test's own, reached over mutual TLS on loopback (an ``openssl``-made CA, a TLS proxy in
front of the second service's socket, as a Docker daemon with ``--tlsverify`` would be).

Models spread over both; the second service is killed while a model builds on it (the model is
moved to the first engine, the failure recorded, never blamed); once the service is back the
engine is used again and what it left behind is removed. The two services share one storage, so
the engine label keeps each engine's sweep to its own containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from containers.podman import engine_url, kill_own_service, own_service

from soundsright_async.audio.dataset import DatasetSpec, generate_dataset
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import get_competition
from soundsright_async.sandbox import RepoLimits, inspect_repo
from soundsright_async.sandbox.client import StepTimeouts
from soundsright_async.sandbox.engine import (
    BridgeFirewall,
    DockerEngine,
    EngineError,
    SandboxLimits,
    TlsFiles,
)
from soundsright_async.sandbox.runner import (
    BenchmarkRunner,
    DatasetDirs,
    ModelUnderTest,
    RunnerConfig,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
OWNER = f"engines-{os.getpid()}"
PREFIX = "srme"
PODMAN_DIR = Path(f"/tmp/soundsright-podman-engines-{os.getpid()}")
CONF = f"/tmp/soundsright-podman-{os.getuid()}/containers.conf"
LIMITS = SandboxLimits(memory_bytes=512 * 2**20, cpus=1.0, pids=64, tmpfs_bytes=256 * 2**20)


# -- the second service and the TLS in front of it --------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certs(d: Path) -> dict[str, Path]:
    """A CA; a server certificate for 127.0.0.1 and a client certificate, both signed by it;
    and a second CA that signed nothing here (a client trusting it must be refused)."""
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN={ca}", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}",
                 cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem",
                 cwd=d)  # fmt: skip
    return {p.stem: p for p in d.glob("*.pem")} | {f"{p.stem}-key": p for p in d.glob("*.key")}


@contextlib.asynccontextmanager
async def _tls_proxy(sock: str, certs: dict[str, Path]) -> AsyncIterator[int]:
    """Mutual TLS on 127.0.0.1 (client certificates signed by ``ca`` only) in front of the
    service's unix socket; yields the port."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs["ca"]))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(certs["server"]), str(certs["server-key"]))

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(sock)
        except OSError:
            writer.close()  # the service is down: the client sees the connection closed
            return
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    async with server:
        yield server.sockets[0].getsockname()[1]


# -- fixtures -----------------------------------------------------------------------------------


def _podman_ps(*filters: str) -> list[dict[str, object]]:
    env = dict(os.environ, CONTAINERS_CONF=CONF)
    argv = ["podman", "ps", "-a", "--format", "json"]
    for f in filters:
        argv += ["--filter", f"label={f}"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(out.stdout or "[]"))


def _engine(url: str, name: str, tls: TlsFiles | None = None) -> DockerEngine:
    return DockerEngine(
        url=url,
        owner=OWNER,
        name=name,
        bridge_prefix=PREFIX,
        firewall=BridgeFirewall(PREFIX) if os.geteuid() == 0 else None,
        limits=LIMITS,
        tls=tls,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetDirs:
    root = tmp_path_factory.mktemp("engines-ds")
    spec = DatasetSpec(
        get_competition("DENOISING_16000HZ"), count=2, seed=3, out=root / "ds", sentences=1
    )
    return DatasetDirs.of(asyncio.run(generate_dataset(spec)))


@pytest.fixture
def second_service() -> Iterator[str]:
    engine_url()  # Podman and the images are there (or the test skips, saying why)
    sock = own_service(PODMAN_DIR).removeprefix("unix://")
    try:
        yield sock
    finally:
        own_service(PODMAN_DIR, "--stop")


async def _models(n: int, slow_build: Path, slow: set[int]) -> list[ModelUnderTest]:
    """The passthrough example; models ``slow`` get a copy whose build sleeps 20 s first (a
    window to kill the engine in, however fast builds are)."""
    shutil.copytree(ROOT / "examples/models/passthrough", slow_build)
    dockerfile = slow_build / "Dockerfile"
    text = dockerfile.read_text()
    dockerfile.write_text(text.replace("COPY app ", "RUN sleep 20\nCOPY app ", 1))
    comp = get_competition("DENOISING_16000HZ")
    out = []
    for i in range(n):
        path = slow_build if i in slow else ROOT / "examples/models/passthrough"
        digest = await inspect_repo(path, RepoLimits(10**8, 1000, 10**8))
        out.append(ModelUnderTest(f"m{i}", path, digest.content_hash, comp, f"hk{i}"))
    return out


# -- tests --------------------------------------------------------------------------------------


async def test_mutual_tls_refuses_a_client_the_engine_does_not_trust(
    tmp_path: Path, second_service: str
) -> None:
    certs = _certs(tmp_path / "certs")
    async with _tls_proxy(second_service, certs) as port:
        url = f"tcp://127.0.0.1:{port}"
        ok = _engine(url, "two", TlsFiles(certs["ca"], certs["client"], certs["client-key"]))
        async with ok:
            await ok.ping()
        # the engine's certificate is not signed by the CA this client trusts
        wrong_ca = _engine(
            url, "two", TlsFiles(certs["other-ca"], certs["client"], certs["client-key"])
        )
        with pytest.raises(EngineError, match="CERTIFICATE_VERIFY_FAILED"):
            await wrong_ca.open()
        # a client certificate the engine's CA did not sign (the other CA's own)
        stranger = _engine(
            url, "two", TlsFiles(certs["ca"], certs["other-ca"], certs["other-ca-key"])
        )
        with pytest.raises(EngineError, match="engine two"):
            await stranger.open()
        missing = _engine(url, "two", TlsFiles(certs["ca"], tmp_path / "no.pem", certs["ca"]))
        with pytest.raises(EngineError, match="engine two: TLS files: "):
            await missing.open()


@pytest.mark.timeout(900)
async def test_models_spread_over_two_engines_and_move_when_one_goes(
    tmp_path: Path, second_service: str, dataset: DatasetDirs
) -> None:
    certs = _certs(tmp_path / "certs")
    m = await _models(6, tmp_path / "slow-build", slow={3})
    async with (
        ScoringPool(workers=2) as pool,
        _tls_proxy(second_service, certs) as port,
        _engine(engine_url(), "one") as one,
        _engine(
            f"tcp://127.0.0.1:{port}",
            "two",
            TlsFiles(certs["ca"], certs["client"], certs["client-key"]),
        ) as two,
    ):
        runner = BenchmarkRunner(
            engines=[(one, [None]), (two, [None])],
            pool=pool,
            work_dir=tmp_path / "work",
            config=RunnerConfig(
                build_timeout_s=600,
                timeouts=StepTimeouts(status=60, enhance=120),
                owner=OWNER,
                probe_interval_s=0.0,
            ),
        )
        # 1. one model on each engine
        first = await runner.benchmark_many(m[0:2], dataset)
        assert [(r.model, r.engine, r.passed) for r in first] == [
            ("m0", "one", True),
            ("m1", "two", True),
        ], [r.to_dict() for r in first]

        # 2. the second service dies while m3 builds on it: m3 moves to engine one
        batch = asyncio.create_task(runner.benchmark_many(m[2:4], dataset))
        builder = (
            f"soundsright.owner={OWNER}",
            "soundsright.engine=two",
            "soundsright.role=builder",
        )
        async with asyncio.timeout(300):
            while not await asyncio.to_thread(  # noqa: ASYNC110 (a podman listing, no event)
                _podman_ps, *builder
            ):
                await asyncio.sleep(0.2)
        kill_own_service(PODMAN_DIR)
        second = await batch
        assert [(r.model, r.engine, r.passed) for r in second] == [
            ("m2", "one", True),
            ("m3", "one", True),
        ], [r.to_dict() for r in second]
        assert second[0].engine_failures == []
        (failure,) = second[1].engine_failures
        assert (failure.step, failure.reason) == ("engine two", "engine_failed")
        assert failure.detail.startswith("engine two"), failure.detail
        assert [(e.name, e.up) for e in runner.loads()] == [("one", True), ("two", False)]
        # the builder it was running is still there (conmon outlives the service)
        assert _podman_ps(f"soundsright.owner={OWNER}", "soundsright.engine=two") != []

        # 3. back: the engine is used again, and its leftover builder goes at the first ping
        assert own_service(PODMAN_DIR).removeprefix("unix://") == second_service
        third = await runner.benchmark_many(m[4:6], dataset)
        # (m5 is placed while m4's ping is out: on one; m4 then finds two back)
        assert [(r.model, r.engine, r.passed) for r in third] == [
            ("m4", "two", True),
            ("m5", "one", True),
        ], [r.to_dict() for r in third]
        assert [e.up for e in runner.loads()] == [True, True]
        async with asyncio.timeout(60):  # the reaper retries while Podman still refuses
            while await asyncio.to_thread(  # noqa: ASYNC110 (a podman listing, no event)
                _podman_ps, f"soundsright.owner={OWNER}"
            ):
                await asyncio.sleep(0.5)
    assert _podman_ps(f"soundsright.owner={OWNER}") == []
