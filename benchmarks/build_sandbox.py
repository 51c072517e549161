"""Benchmark: the sandboxed build (buildah in a throwaway builder container, archive, load) vs
the engine's own build (``POST /build``, which runs ``RUN`` steps on the host; the old path).

    .venv/bin/python benchmarks/build_sandbox.py [--repeat 2] [--models passthrough,dereverb]
        [--builder-image localhost/soundsright-builder:latest]

Real Podman (``DOCKER_HOST``, else the socket of ``make podman``). Each build gets a fresh copy
of the example model plus an id file, so no layer is cached. Prints one JSON object: per model
the mean seconds of each path, ``sandboxed / engine``, and the sandboxed build's phases (from
the ``sandbox.build.finished`` log event). Only images labelled with this run's owner are
removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiodocker
import orjson
from structlog.testing import capture_logs

from soundsright_async.sandbox.engine import (
    BUILDER_IMAGE,
    BuildRequest,
    DockerEngine,
    project_labels,
)
from soundsright_async.sandbox.engine.context import write_context_tar

ROOT = Path(__file__).resolve().parents[1]
OWNER = f"bench-build-{os.getpid()}"


def _url() -> str:
    return (
        os.environ.get("DOCKER_HOST") or f"unix:///tmp/soundsright-podman-{os.getuid()}/podman.sock"
    )


def _fresh(model: str, tmp: Path, n: int, kind: str) -> Path:
    ctx = tmp / f"{model}-{n}-{kind}"
    shutil.copytree(ROOT / "examples/models" / model, ctx)
    (ctx / "app").mkdir(exist_ok=True)
    (ctx / "app/bench-id.txt").write_text(f"{OWNER}-{n}\n")
    return ctx


async def _engine_build(docker: aiodocker.Docker, ctx: Path, tag: str) -> float:
    tar = ctx.parent / f"{ctx.name}.tar"
    t0 = time.monotonic()
    await asyncio.to_thread(write_context_tar, ctx, tar, max_bytes=1 << 30)
    with tar.open("rb") as fh:
        await docker.images.build(
            fileobj=fh,
            encoding="identity",
            tag=tag,
            labels=project_labels(OWNER),
            pull=False,
            rm=True,
            forcerm=True,
        )
    await docker.images.inspect(tag)
    return time.monotonic() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--models", default="passthrough,spectral-gate,dereverb")
    ap.add_argument("--builder-image", default=BUILDER_IMAGE)
    args = ap.parse_args()
    out: dict[str, Any] = {"machine": platform.machine(), "cores": os.cpu_count(), "models": {}}
    docker = aiodocker.Docker(url=_url())
    n = 0
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp_s:
        tmp = Path(tmp_s)
        engine = DockerEngine(
            url=_url(), owner=OWNER, firewall=None, builder_image=args.builder_image
        )
        async with engine:
            for model in args.models.split(","):
                old, new, phases = [], [], []
                for _ in range(args.repeat):
                    n += 1
                    tag = f"localhost/soundsright-model:bench-{OWNER}-{n}"
                    ctx = _fresh(model, tmp, n, "old")
                    old.append(await _engine_build(docker, ctx, tag + "-old"))
                    t0 = time.monotonic()
                    with capture_logs() as logs:
                        ctx = _fresh(model, tmp, n, "new")
                        req = BuildRequest(ctx, tag, project_labels(OWNER), 900)
                        await engine.build(req)
                    new.append(time.monotonic() - t0)
                    phases += [
                        {k: v for k, v in e.items() if k.endswith("_s")}
                        for e in logs
                        if e["event"] == "sandbox.build.finished"
                    ]
                mean_old, mean_new = sum(old) / len(old), sum(new) / len(new)
                out["models"][model] = {
                    "engine_build_s": [round(x, 2) for x in old],
                    "sandboxed_build_s": [round(x, 2) for x in new],
                    "sandboxed_over_engine": round(mean_new / mean_old, 2),
                    "sandboxed_phases": phases,
                }
            await engine.sweep()
    await docker.close()
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    asyncio.run(main())
