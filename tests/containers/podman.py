"""Find (or start) the project's Podman API socket and the base image for container tests.

Order: ``$DOCKER_HOST``; the socket ``scripts/podman.sh`` starts (``make podman``); else run
``scripts/podman.sh`` when ``podman`` is installed. The base and builder images are built with
``scripts/base-image.sh`` when missing. Tests skip (saying why) only when Podman cannot run.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/soundsright-base:latest"
BUILDER_IMAGE = "localhost/soundsright-builder:latest"


@functools.cache
def _prepare() -> tuple[str | None, str]:
    url = os.environ.get("DOCKER_HOST")
    sock = Path(f"/tmp/soundsright-podman-{os.getuid()}/podman.sock")
    if not url:
        if shutil.which("podman") is None:
            return None, "podman is not installed (run `make podman` as root to install it)"
        proc = subprocess.run(
            [str(ROOT / "scripts/podman.sh")], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            return None, f"scripts/podman.sh could not start Podman: {proc.stderr[-500:]}"
        url = f"unix://{sock}"
    env = dict(os.environ, CONTAINERS_CONF=str(sock.parent / "containers.conf"))
    missing = [
        image
        for image in (BASE_IMAGE, BUILDER_IMAGE)
        if subprocess.run(["podman", "image", "exists", image], env=env, timeout=60).returncode
    ]
    if missing:
        proc = subprocess.run(
            [str(ROOT / "scripts/base-image.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if proc.returncode != 0:
            return None, f"scripts/base-image.sh failed: {proc.stderr[-500:]}"
    return url, ""


def engine_url() -> str:
    """The Podman API URL, or skip the test with the reason Podman cannot run here."""
    url, why = _prepare()
    if url is None:
        pytest.skip(why)
    return url


def own_service(directory: Path, *args: str) -> str:
    """Start (or stop, with ``--stop``) a test's own Podman service on its own socket under
    ``directory`` (the same storage and containers.conf as the shared service, which is never
    touched: other tests use it meanwhile); its ``DOCKER_HOST`` (``unix://...``)."""
    env = dict(os.environ, SOUNDSRIGHT_PODMAN_DIR=str(directory))
    env.pop("DOCKER_HOST", None)
    proc = subprocess.run(
        [str(ROOT / "scripts" / "podman.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().removeprefix("export ").removeprefix("DOCKER_HOST=")


def kill_own_service(directory: Path) -> None:
    """SIGKILL a service ``own_service`` started (its containers live on, under conmon)."""
    os.kill(int((directory / "service.pid").read_text()), signal.SIGKILL)
