"""Wire ``SandboxSettings`` into opened engines and a ``BenchmarkRunner`` (the daemon and
``model verify`` share this)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from ..audio.pool import ScoringPool
from ..config import SandboxSettings
from .client import ClientLimits, StepTimeouts
from .engine import (
    BridgeFirewall,
    BuildLimits,
    DockerEngine,
    GpuRequest,
    SandboxLimits,
    default_engine_url,
)
from .runner import BenchmarkRunner, RunnerConfig

__all__ = ["open_runner", "runner_config"]


def runner_config(s: SandboxSettings) -> RunnerConfig:
    return RunnerConfig(
        build_timeout_s=s.build_timeout_s,
        max_concurrent_builds=s.max_concurrent_builds,
        timeouts=StepTimeouts(
            status=s.status_timeout_s,
            prepare=s.prepare_timeout_s,
            upload=s.upload_timeout_s,
            enhance=s.enhance_timeout_s,
            download=s.download_timeout_s,
            reset=s.reset_timeout_s,
        ),
        enhance_factor_48k=s.enhance_factor_48k,
        client=ClientLimits(
            max_download_bytes=s.max_download_bytes,
            max_extracted_bytes=s.max_extracted_bytes,
            member_slack=s.zip_member_slack,
        ),
        owner=s.owner,
        keep_images=s.keep_images,
    )


@asynccontextmanager
async def open_runner(
    s: SandboxSettings, *, pool: ScoringPool, work_dir: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[BenchmarkRunner]:
    """Open every configured engine (sweep + firewall), yield a runner, close them all."""
    env = os.environ if env is None else env
    limits = SandboxLimits(
        memory_bytes=s.memory_mb * 1024**2,
        cpus=s.cpus,
        pids=s.pids_limit,
        tmpfs_bytes=s.tmpfs_mb * 1024**2,
        log_bytes=s.log_bytes,
        extra_tmpfs=tuple(s.extra_tmpfs),
    )
    async with AsyncExitStack() as stack:
        engines = []
        for e in s.engines:
            engine = DockerEngine(
                url=default_engine_url(e.url, env),
                owner=s.owner,
                name=e.name,
                kind=e.kind,
                limits=limits,
                bridge_prefix=s.bridge_prefix,
                firewall=BridgeFirewall(s.bridge_prefix) if s.firewall == "iptables" else None,
                build_network=s.build_network,
                build_log_bytes=s.build_log_bytes,
                builder_image=s.builder_image,
                base_images=tuple(s.base_images),
                build_limits=BuildLimits(
                    memory_bytes=s.build_memory_mb * 1024**2,
                    disk_bytes=s.build_disk_mb * 1024**2,
                    cpus=s.build_cpus,
                    pids=s.build_pids_limit,
                ),
                build_dns=tuple(s.build_dns),
                build_dir=s.build_dir,
            )
            await stack.enter_async_context(engine)
            slots: list[GpuRequest | None] = (
                [GpuRequest(g, e.gpu_driver) for g in e.gpus] if e.gpus else [None] * e.run_slots
            )
            engines.append((engine, slots))
        yield BenchmarkRunner(
            engines=engines, pool=pool, work_dir=work_dir, config=runner_config(s)
        )
