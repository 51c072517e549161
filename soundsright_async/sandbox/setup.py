"""Wire ``SandboxSettings`` into opened engines and a ``BenchmarkRunner`` (the daemon and
``model verify`` share this)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import structlog
from pydantic import SecretStr

from .._exceptions import ConfigError
from ..audio.pool import ScoringPool
from ..config import ModelSourceSettings, SandboxSettings
from ._repo import RepoLimits
from .base import ModelSource
from .client import ClientLimits, StepTimeouts
from .engine import (
    BridgeFirewall,
    BuildLimits,
    DockerEngine,
    GpuRequest,
    SandboxLimits,
    TlsFiles,
    default_engine_url,
)
from .git import GitSource
from .huggingface import HuggingFaceSource
from .resources import fit_limits
from .runner import BenchmarkRunner, RunnerConfig

__all__ = ["build_source", "limits_of", "open_runner", "runner_config"]

log = structlog.get_logger(__name__)


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


async def _fitted_limits(s: SandboxSettings, engine: DockerEngine, slots: int) -> SandboxLimits:
    """The container limits, checked against (or sized from) the engine host's memory and CPUs
    (``resources.fit_limits``; a ``ConfigError`` when configured values do not fit)."""
    memory, ncpu = await engine.host_resources()
    try:
        fitted = fit_limits(
            slots=slots,
            host_memory=memory,
            host_cpus=ncpu,
            memory_bytes=None if s.memory_mb is None else s.memory_mb * 1024**2,
            cpus=s.cpus,
            tmpfs_bytes=s.tmpfs_mb * 1024**2,
        )
    except ConfigError as exc:
        raise ConfigError(f"engine {engine.name}: {exc.problem}", key="sandbox") from None
    except ValueError:
        raise ConfigError(
            f"engine {engine.name} reports {memory} bytes of memory and {ncpu} CPUs", key="sandbox"
        ) from None
    log.info(
        "sandbox.limits",
        engine=engine.name,
        slots=slots,
        memory_mb=fitted.memory_bytes // 1024**2,
        cpus=fitted.cpus,
        tmpfs_mb=s.tmpfs_mb,
        host_memory_mb=memory // 1024**2,
        host_cpus=ncpu,
    )
    return SandboxLimits(
        memory_bytes=fitted.memory_bytes,
        cpus=fitted.cpus,
        pids=s.pids_limit,
        tmpfs_bytes=s.tmpfs_mb * 1024**2,
        log_bytes=s.log_bytes,
        extra_tmpfs=tuple(s.extra_tmpfs),
    )


@asynccontextmanager
async def open_runner(
    s: SandboxSettings,
    *,
    pool: ScoringPool,
    work_dir: Path,
    env: Mapping[str, str] | None = None,
    sweep_owner: Callable[[str], bool] | None = None,
) -> AsyncIterator[BenchmarkRunner]:
    """Open every configured engine (sweep + firewall), fit the container limits to each
    engine's host, yield a runner, close them all. ``sweep_owner``: other owner labels the
    start-up sweep removes too (``model verify`` sweeps its dead earlier runs)."""
    env = os.environ if env is None else env
    async with AsyncExitStack() as stack:
        engines = []
        for e in s.engines:
            firewall = (
                BridgeFirewall(s.bridge_prefix, state_dir=s.firewall_state_dir)
                if s.firewall == "iptables"
                else None
            )
            engine = DockerEngine(
                url=default_engine_url(e.url, env),
                owner=s.owner,
                name=e.name,
                kind=e.kind,
                bridge_prefix=s.bridge_prefix,
                firewall=firewall,
                build_network=s.build_network,
                build_log_bytes=s.build_log_bytes,
                seccomp_base=s.seccomp_base if s.deny_userns else None,
                sweep_owner=sweep_owner,
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
                tls=(
                    TlsFiles(e.tls_ca, e.tls_cert, e.tls_key)
                    if e.tls_ca is not None and e.tls_cert is not None and e.tls_key is not None
                    else None
                ),
                host_check=e.host_check,
            )
            await stack.enter_async_context(engine)
            slots: list[GpuRequest | None] = (
                [GpuRequest(g, e.gpu_driver) for g in e.gpus] if e.gpus else [None] * e.run_slots
            )
            engine.limits = await _fitted_limits(s, engine, len(slots))
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
