"""Pure parts of the sandbox: the locked-down container spec, GPU config, firewall rules,
engine location and the safe zip reader (no Podman needed)."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from soundsright_async.sandbox.engine import (
    EngineError,
    GpuRequest,
    SandboxLimits,
    container_config,
    default_engine_url,
    network_config,
    rule_pair,
    tmpfs_paths,
)
from soundsright_async.sandbox.safezip import UnsafeZip, extract_zip


def test_container_config_is_locked_down() -> None:
    limits = SandboxLimits(
        memory_bytes=2**30, cpus=1.5, pids=100, tmpfs_bytes=2**26, log_bytes=4096
    )
    cfg = container_config(
        image="sha256:abc",
        network="net1",
        labels={"soundsright.managed": "true"},
        limits=limits,
        tmpfs=["/tmp"],
        engine_kind="podman",
    )
    host = cfg["HostConfig"]
    assert cfg["User"] == "10002:10002"
    assert host["NetworkMode"] == "net1"
    assert host["PortBindings"] == {}
    assert host["PublishAllPorts"] is False
    assert host["Privileged"] is False
    assert host["Memory"] == host["MemorySwap"] == 2**30
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 100
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=67108864,mode=1777"}
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] == []
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Binds"] == []
    assert host["DeviceRequests"] == []
    assert host["LogConfig"] == {"Type": "k8s-file", "Config": {"max-size": "4096"}}


def test_gpu_requests_in_spec() -> None:
    cdi = container_config(
        image="i",
        network="n",
        labels={},
        limits=SandboxLimits(),
        tmpfs=["/tmp"],
        engine_kind="podman",
        gpu=GpuRequest("1"),
    )
    assert cdi["HostConfig"]["DeviceRequests"] == [
        {"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=1"]}
    ]
    docker = container_config(
        image="i",
        network="n",
        labels={},
        limits=SandboxLimits(),
        tmpfs=["/tmp"],
        engine_kind="docker",
        gpu=GpuRequest("0", "nvidia"),
    )
    assert docker["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", "DeviceIDs": ["0"], "Capabilities": [["gpu"]]}
    ]
    assert docker["HostConfig"]["LogConfig"]["Config"]["max-file"] == "1"


def test_network_is_internal_with_prefixed_bridge() -> None:
    cfg = network_config("soundsright-x", "srbxabc", {"a": "b"})
    assert cfg["Internal"] is True
    assert cfg["Options"] == {"com.docker.network.bridge.name": "srbxabc"}
    with pytest.raises(ValueError, match="bridge name"):
        network_config("n", "x" * 16, {})


def test_tmpfs_paths() -> None:
    assert tmpfs_paths(["/data"], ["/modelapi/out"], "/a /b") == [
        "/tmp",
        "/var/tmp",
        "/run",
        "/data",
        "/modelapi/out",
        "/a",
        "/b",
    ]
    for bad in ("relative", "/etc", "/usr/lib", "/a/../b", "/a,size=1"):
        with pytest.raises(ValueError, match="tmpfs path"):
            tmpfs_paths([bad], [], None)


def test_rule_pair() -> None:
    accept, drop = rule_pair("srbx")
    assert accept == [
        "-i",
        "srbx+",
        "-m",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-j",
        "ACCEPT",
    ]
    assert drop == ["-i", "srbx+", "-j", "DROP"]
    with pytest.raises(ValueError, match="bridge prefix"):
        rule_pair("bad prefix")


def test_engine_url_order(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    sock.touch()
    assert default_engine_url("tcp://x:1", {"DOCKER_HOST": "unix:///d"}) == "tcp://x:1"
    assert default_engine_url(None, {"DOCKER_HOST": "unix:///d"}) == "unix:///d"
    assert default_engine_url(None, {}, candidates=[str(sock)]) == f"unix://{sock}"
    with pytest.raises(EngineError, match="no container engine"):
        default_engine_url(None, {}, candidates=[str(tmp_path / "missing")])


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("../a.wav", b"x")], "path_traversal"),
        ([("a/../../b.wav", b"x")], "path_traversal"),
        ([("/etc/a.wav", b"x")], "absolute_path"),
        ([("C:/a.wav", b"x")], "absolute_path"),
        ([("a\\b.wav", b"x")], "unsafe_path"),
        ([(_symlink("a.wav"), b"/etc/passwd")], "not_regular"),
        ([(f"{i}.wav", b"x") for i in range(6)], "too_many_members"),
        ([("a.wav", b"\0" * 5000)], "too_large"),
        ([("a.wav", b"x"), ("A.WAV", b"y")], "duplicate"),
    ],
)
def test_unsafe_zips_write_nothing(tmp_path: Path, entries: list, reason: str) -> None:  # type: ignore[type-arg]
    archive = tmp_path / "z.zip"
    archive.write_bytes(_zip(entries))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeZip) as exc:
        extract_zip(archive, dest, max_members=5, max_bytes=4096)
    assert exc.value.reason == reason
    assert list(dest.iterdir()) == []


def test_safe_zip_extracts(tmp_path: Path) -> None:
    archive = tmp_path / "z.zip"
    archive.write_bytes(_zip([("0.wav", b"abc"), ("log.txt", b"hi")]))
    (tmp_path / "out").mkdir()
    assert extract_zip(archive, tmp_path / "out", max_members=5, max_bytes=100) == [
        "0.wav",
        "log.txt",
    ]
    assert (tmp_path / "out/0.wav").read_bytes() == b"abc"
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(UnsafeZip, match="not a zip"):
        extract_zip(tmp_path / "bad.zip", tmp_path / "out", max_members=5, max_bytes=100)


async def test_an_engine_on_another_host_is_refused_at_open(tmp_path: Path) -> None:
    """``host_check``: an engine whose ``/info`` names another host cannot be used (builds
    bind-mount this host's files; models are reached at their bridge address); with
    ``host_check=False`` the check is skipped. A stand-in engine API on a unix socket."""
    import socket

    from aiohttp import web

    from soundsright_async.sandbox.engine import DockerEngine

    calls: list[str] = []

    async def api(request: web.Request) -> web.Response:
        calls.append(request.path)
        if request.path.endswith("/version"):
            return web.json_response({"Version": "4.3.1", "ApiVersion": "1.41"})
        if request.path.endswith("/info"):
            return web.json_response({"Name": "gpu-host-7", "MemTotal": 2**34, "NCPU": 8})
        if request.path.endswith(("/json", "/networks")):  # the open-time sweep: nothing
            return web.json_response([])
        return web.json_response({"message": "not here"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "engine.sock"
    await web.UnixSite(runner, str(sock)).start()
    try:
        remote = DockerEngine(url=f"unix://{sock}", owner="t", name="gpu7", seccomp_base=None)
        with pytest.raises(EngineError) as info:
            await remote.open()
        assert str(info.value).startswith(
            f"engine gpu7 (unix://{sock}) runs on host 'gpu-host-7', not on this host "
            f"({socket.gethostname()!r}): builds bind-mount this host's build directory"
        )
        assert any(p.endswith("/info") for p in calls)
        calls.clear()
        unchecked = DockerEngine(
            url=f"unix://{sock}", owner="t", name="gpu7", seccomp_base=None, host_check=False
        )
        async with unchecked:
            await unchecked.ping()
        assert calls  # it talked to the engine, and never asked where it runs
        assert not any(p.endswith("/info") for p in calls)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("hotkey", "content_hash", "want"),
    [
        (
            "traversal",
            "/IyTQRLv6BAo62Ddv88CL3+OBNh1xgClZvny4TEh6/k=",
            "denoising_16000hz-traversal-iytqrlv6bao6",
        ),
        ("5GrwvaEF", "yV8uRn7pu9t4Ue7gqHUsx8Bjr19Y", "denoising_16000hz-5grwvaef-yv8urn7pu9t4"),
        ("a//b", "++//", "denoising_16000hz-a_b-x"),
        ("", "", "denoising_16000hz-x-x"),
    ],
)
def test_image_tags_are_valid_oci_reference_names(
    hotkey: str, content_hash: str, want: str
) -> None:
    import re

    from soundsright_async.sandbox.engine import image_tag

    tag = image_tag("DENOISING_16000HZ", hotkey, content_hash)
    assert tag == f"localhost/soundsright-model:{want}"
    name = tag.split(":", 1)[1] + "-abc123"  # the runner's per-run suffix
    # OCI image-layout ref.name: components of [A-Za-z0-9] joined by one of [-._:@+] or "--"
    assert re.fullmatch(r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*", name), name
    assert len(name) <= 128
