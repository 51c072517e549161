"""``soundsright model verify`` end to end with real Podman (see tests/containers/podman.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from containers.hostile import hostile_repo
from containers.podman import ROOT, engine_url

from soundsright_async.cli import main
from soundsright_async.cli.model import dead_verify_owner
from soundsright_async.sandbox.engine import DockerEngine
from soundsright_async.sandbox.engine.firewall import process_start_time

pytestmark = pytest.mark.slow


def test_verify_passthrough_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine_url())
    rc = main(
        [
            "model",
            "verify",
            "--path",
            str(ROOT / "examples/models/passthrough"),
            "--competition",
            "DEREVERBERATION_48000HZ",
            "--count",
            "2",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    assert out["passed"] is True
    assert [s["step"] for s in out["steps"]] == [
        "build",
        "start",
        "status",
        "prepare",
        "upload",
        "enhance",
        "download",
        "reset",
        "outputs",
        "score",
    ]
    assert set(out["metrics"]["metrics"]) == {"ESTOI", "SI_SDR"}


def test_verify_reports_failed_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine_url())
    (tmp_path / "Dockerfile").write_text(
        "FROM localhost/soundsright-base:latest\nRUN echo broken-step && exit 7\n"
    )
    rc = main(
        [
            "model",
            "verify",
            "--path",
            str(tmp_path),
            "--competition",
            "DENOISING_16000HZ",
            "--count",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED at step build: build_failed" in out
    assert "broken-step" in out


def _podman(url: str, *argv: str) -> list[str]:
    """A podman CLI listing; retried because a listing fails when another user of the shared
    service removes an image while it runs."""
    for _ in range(5):
        out = subprocess.run(
            ["podman", "--url", url, *argv], capture_output=True, text=True, timeout=60
        )
        if out.returncode == 0:
            return out.stdout.split()
        time.sleep(0.5)
    raise AssertionError(f"podman {' '.join(argv)}: {out.stderr}")


def _leftovers(url: str, owner: str) -> dict[str, list[str]]:
    label = f"label=soundsright.owner={owner}"
    return {
        "containers": _podman(url, "ps", "-a", "--filter", label, "--format", "{{.ID}}"),
        "networks": _podman(url, "network", "ls", "--filter", label, "--format", "{{.Name}}"),
        "images": _podman(url, "images", "--filter", label, "--format", "{{.ID}}"),
    }


def _start_hanging_verify(tmp_path: Path, url: str) -> tuple[subprocess.Popen[str], str]:
    """``model verify`` of a model whose enhance hangs, in a subprocess with its own TMPDIR;
    returns once its container runs."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from soundsright_async.cli import main; raise SystemExit(main())",
            "model",
            "verify",
            "--path",
            str(hostile_repo(tmp_path, "hang")),
            "--competition",
            "DENOISING_16000HZ",
            "--count",
            "1",
        ],
        cwd=ROOT,
        env=dict(os.environ, DOCKER_HOST=url, TMPDIR=str(tmpdir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    owner = f"verify-{proc.pid}-{process_start_time(proc.pid)}"
    deadline = time.monotonic() + 240
    # The builder container carries the owner label too: wait for the model's own network
    # (made when its container starts), not just any labelled container.
    while not (left := _leftovers(url, owner))["networks"] or not left["containers"]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the verify container never started"
        time.sleep(0.5)
    time.sleep(2)  # into the enhance step
    return proc, owner


def test_sigterm_cleans_up_like_ctrl_c(tmp_path: Path) -> None:
    url = engine_url()
    proc, owner = _start_hanging_verify(tmp_path, url)
    left = _leftovers(url, owner)
    assert left["networks"]
    assert left["images"]
    assert [p.name for p in (tmp_path / "tmp").iterdir() if "verify" in p.name]
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # a second one does not cut the cleanup short
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out, err)
    assert "terminated; the container, network, image and files are removed" in err
    assert "Traceback" not in err
    assert _leftovers(url, owner) == {"containers": [], "networks": [], "images": []}
    # temp dir and seccomp profile gone; only the builder's cache of exported base images stays
    # (soundsright-build-UID, reused by every build, docs/sandbox.md "Builds")
    left_files = [p.name for p in (tmp_path / "tmp").iterdir()]
    assert left_files in ([], [f"soundsright-build-{os.getuid()}"])


def test_the_next_verify_sweeps_a_killed_one(tmp_path: Path) -> None:
    """SIGKILL leaves everything behind; an engine opened with ``dead_verify_owner`` (what
    the next ``model verify`` does at start-up) removes it, and nothing of a live owner."""
    url = engine_url()
    proc, owner = _start_hanging_verify(tmp_path, url)
    proc.kill()
    proc.communicate(timeout=60)
    left = _leftovers(url, owner)
    assert left["containers"]
    assert left["networks"]
    assert left["images"]
    assert dead_verify_owner(owner)
    assert not dead_verify_owner(f"verify-{os.getpid()}-{process_start_time(os.getpid())}")

    async def sweep() -> None:
        engine = DockerEngine(
            url=url, owner=f"test-sweep-{os.getpid()}", sweep_owner=dead_verify_owner
        )
        async with engine:
            pass

    asyncio.run(sweep())
    assert _leftovers(url, owner) == {"containers": [], "networks": [], "images": []}


def test_unreadable_outputs_score_the_floor_and_fail_verify(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine_url())
    args = ["model", "verify", "--path", str(hostile_repo(tmp_path, "garbage"))]
    args += ["--competition", "DENOISING_16000HZ", "--count", "2"]
    rc = main([*args, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["passed"] is False
    assert out["failed_step"] is None  # every step ran; the files themselves are unusable
    floors = {"PESQ": -0.5, "ESTOI": -1.0, "SI_SDR": -100.0, "SI_SAR": -100.0, "SI_SIR": -100.0}
    averages = {m: r["average"] for m, r in out["metrics"]["metrics"].items()}
    assert averages == {m: floors[m] for m in averages}
    assert sorted(out["unscored_files"]) == sorted(out["metrics"]["metrics"]["PESQ"]["scores"])
    assert all("unreadable" in why for why in out["unscored_files"].values())
    rc = main(args)
    text = capsys.readouterr().out
    assert rc == 1
    assert (
        "FAILED: 2 of 2 output files could not be scored (each scores the metric's floor):" in text
    )
    assert "PASSED" not in text


def test_limits_that_do_not_fit_the_host_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine_url())
    config = tmp_path / "validator.toml"
    config.write_text("[sandbox]\nmemory_mb = 1000000\ncpus = 1.0\n")
    rc = main(
        [
            "model",
            "verify",
            "--config",
            str(config),
            "--path",
            str(ROOT / "examples/models/passthrough"),
            "--competition",
            "DENOISING_16000HZ",
            "--count",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.startswith(
        "soundsright: error: sandbox: engine default: 1 run slots x (memory_mb 1000000 + tmpfs_mb "
        "4096) = 1004096 MiB is over 80% of the engine host's "
    )
    assert captured.err.count("\n") == 1


def test_verify_without_root_refuses_instead_of_dropping_the_firewall(tmp_path: Path) -> None:
    """As another user, ``model verify`` stops with one usage line unless --no-firewall."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run as another user")
    out = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            "from soundsright_async.cli import main; raise SystemExit(main())",
            "model",
            "verify",
            "--path",
            str(ROOT / "examples/models/passthrough"),
            "--competition",
            "DENOISING_16000HZ",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
        timeout=120,
    )
    assert out.returncode == 2, out
    assert out.stderr.splitlines()[-1] == (
        "soundsright model verify: error: the host firewall that keeps model containers away "
        "from this host's services needs root (iptables); run as root, or pass --no-firewall "
        '(or sandbox.firewall = "off")'
    )
    assert "Traceback" not in out.stderr
