"""Wire ``SandboxSettings`` into opened engines and a ``BenchmarkRunner`` (the daemon and
``model verify`` share this)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from pydantic import SecretStr

from ..audio.pool import ScoringPool
from ..config import ModelSourceSettings, SandboxSettings
from ._repo import RepoLimits
from .base import ModelSource
from .client import ClientLimits, StepTimeouts
from .engine import BridgeFirewall, DockerEngine, GpuRequest, SandboxLimits, default_engine_url
from .git import GitSource
from .huggingface import HuggingFaceSource
from .runner import BenchmarkRunner, RunnerConfig

__all__ = ["build_source", "limits_of", "open_runner", "runner_config"]


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
            )
            await stack.enter_async_context(engine)
            slots: list[GpuRequest | None] = (
                [GpuRequest(g, e.gpu_driver) for g in e.gpus] if e.gpus else [None] * e.run_slots
            )
            engines.append((engine, slots))
        runner = BenchmarkRunner(
            engines=engines, pool=pool, work_dir=work_dir, config=runner_config(s)
        )
        try:
            yield runner
        finally:
            await runner.drain()


def limits_of(settings: ModelSourceSettings) -> RepoLimits:
    return RepoLimits(
        max_total_bytes=settings.max_total_bytes,
        max_files=settings.max_files,
        max_file_bytes=settings.max_file_bytes,
    )


def build_source(settings: ModelSourceSettings, token: SecretStr | None) -> ModelSource:
    limits = limits_of(settings)
    if settings.source == "git":
        assert settings.git_base_url is not None
        return GitSource(
            base_url=settings.git_base_url, limits=limits, timeout_s=settings.download_timeout_s
        )
    return HuggingFaceSource(
        endpoint=settings.hf_endpoint,
        limits=limits,
        timeout_s=settings.download_timeout_s,
        token=token,
    )
