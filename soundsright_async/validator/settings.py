"""The validator's settings: the shared sections from ``config`` plus the daemon's own.

``load_validator_settings(path)`` reads the TOML file (``config``'s loader: strict types, unknown
keys refused, one-line ``FILE: KEY: PROBLEM`` errors) and resolves the secrets from the
environment. Every key is documented in ``docs/validator.md`` and ``config/validator.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from .._exceptions import ConfigError
from ..competitions import COMPETITIONS, get_competition
from ..config import (
    DatasetSettings,
    FilePath,
    ModelSourceSettings,
    SandboxSettings,
    ScoringSettings,
    Secrets,
    _load,
    _NodeSettings,
    _Section,
    resolve_secret,
)

__all__ = [
    "BaselineModel",
    "BaselineSettings",
    "CompetitionSettings",
    "DaemonSettings",
    "DiscoverySettings",
    "FeedbackSettings",
    "ReportingSettings",
    "StatusSettings",
    "ValidatorSettings",
    "WeightsSettings",
    "load_validator_settings",
]


class CompetitionSettings(_Section):
    """Epoch *e* covers blocks ``[anchor + e*epoch_blocks, anchor + (e+1)*epoch_blocks)``."""

    epoch_blocks: int = Field(default=21600, ge=2)
    """21600 blocks = 3 days at 12 s."""
    anchor_block: int = Field(default=0, ge=0)
    stop_margin_blocks: int = Field(default=300, ge=0)
    """No new benchmark starts this close to the epoch end."""
    clock_interval_s: float = Field(default=6.0, gt=0)
    """How often the epoch clock reads the head block."""
    judge_wait_s: float = Field(default=600.0, ge=0)
    """At the epoch end, how long judging waits for benchmarks still running."""
    competitions: list[str] = Field(
        default_factory=lambda: [c.name for c in COMPETITIONS], min_length=1
    )
    """The competitions this validator runs (all four by default)."""

    @field_validator("competitions")
    @classmethod
    def _competitions(cls, v: list[str]) -> list[str]:
        names = []
        for name in v:
            try:
                names.append(get_competition(name).name)
            except (KeyError, ValueError) as exc:
                raise ValueError(str(exc)) from None
        if len(set(names)) != len(names):
            raise ValueError("a competition is listed twice")
        return [c.name for c in COMPETITIONS if c.name in names]

    @model_validator(mode="after")
    def _margin(self) -> CompetitionSettings:
        if self.stop_margin_blocks >= self.epoch_blocks:
            raise ValueError("stop_margin_blocks must be smaller than epoch_blocks")
        return self


class DiscoverySettings(_Section):
    interval_s: float = Field(default=600.0, gt=0)
    """How often every neuron is asked for its model during an epoch."""
    concurrency: int = Field(default=128, ge=1, le=4096)
    """Neurons asked at once (each is asked for every competition at once)."""
    call_timeout_s: float = Field(default=10.0, gt=0)
    """Total deadline of one signed ``POST /v3/model``."""
    max_response_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)


class BaselineModel(_Section):
    """A model benchmarked every epoch like a miner's: a local directory or a repo at a commit."""

    competition: str
    path: FilePath | None = None
    repo: str | None = None
    """``namespace/name`` fetched with ``[models]``."""
    revision: str | None = None
    label: str | None = None

    @field_validator("competition")
    @classmethod
    def _competition(cls, v: str) -> str:
        try:
            return get_competition(v).name
        except (KeyError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _one_source(self) -> BaselineModel:
        if (self.path is None) == (self.repo is None):
            raise ValueError("a baseline model needs exactly one of path or repo")
        if self.repo is not None and self.revision is None:
            raise ValueError("a baseline repo needs its revision (the full commit id)")
        return self

    def name(self) -> str:
        if self.label:
            return self.label
        return self.path.name if self.path is not None else str(self.repo)


class BaselineSettings(_Section):
    models: list[BaselineModel] = Field(default_factory=list)


class WeightsSettings(_Section):
    interval_blocks: int = Field(default=360, ge=1)
    """Blocks between two weight settings (the chain's rate limit is respected too)."""
    retry_backoff_s: float = Field(default=12.0, gt=0)
    retry_backoff_max_s: float = Field(default=600.0, gt=0)
    burn_uid: int | None = Field(default=None, ge=0, le=65535)
    """When no uid can be paid, all weight goes here; unset: no weights are set that epoch."""


class FeedbackSettings(_Section):
    concurrency: int = Field(default=16, ge=1, le=1024)
    call_timeout_s: float = Field(default=10.0, gt=0)
    retry_backoff_s: float = Field(default=10.0, gt=0)
    retry_backoff_max_s: float = Field(default=600.0, gt=0)
    give_up_after_s: float = Field(default=6 * 3600.0, gt=0)
    """A Feedback not delivered within this time after it was queued is dropped (logged)."""


class ReportingSettings(_Section):
    url: str | None = None
    """Where judged epochs are POSTed (btauth/1 signed over the body); unset: local audit only."""
    receiver_hotkey: str | None = None
    """The report server's hotkey (the signature's receiver); unset: our own hotkey."""
    timeout_s: float = Field(default=30.0, gt=0)
    retry_backoff_s: float = Field(default=30.0, gt=0)
    retry_backoff_max_s: float = Field(default=3600.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return v


class StatusSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=6010, ge=0, le=65535)


class DaemonSettings(_Section):
    metagraph_interval_s: float = Field(default=120.0, gt=0)
    retry_backoff_s: float = Field(default=5.0, gt=0)
    """First wait after a failed step (chain unreachable, ...); doubles per failure."""
    retry_backoff_max_s: float = Field(default=300.0, gt=0)
    restart_backoff_s: float = Field(default=1.0, gt=0)
    """First wait before a crashed task is restarted."""
    restart_backoff_max_s: float = Field(default=60.0, gt=0)
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    """SIGTERM: runs in flight are cancelled and cleaned up within this time."""


class ValidatorSettings(_NodeSettings):
    scoring: ScoringSettings = ScoringSettings()
    dataset: DatasetSettings = DatasetSettings()
    models: ModelSourceSettings = ModelSourceSettings()
    sandbox: SandboxSettings = SandboxSettings()
    competition: CompetitionSettings = CompetitionSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    baseline: BaselineSettings = BaselineSettings()
    weights: WeightsSettings = WeightsSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    reporting: ReportingSettings = ReportingSettings()
    status: StatusSettings = StatusSettings()
    daemon: DaemonSettings = DaemonSettings()

    def store_path(self) -> Path:
        return self.data_dir / "validator.sqlite"


def load_validator_settings(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[ValidatorSettings, Secrets]:
    """Validator settings and secrets; ``speech = "elevenlabs"`` requires its API key."""
    settings = _load(ValidatorSettings, path)
    env = os.environ if env is None else env
    try:
        secrets = Secrets(
            elevenlabs_api_key=resolve_secret("ELEVENLABS_API_KEY", env),
            hf_token=resolve_secret("HF_TOKEN", env),
        )
    except ConfigError as exc:
        raise ConfigError(exc.problem, file=str(path), key=exc.key) from None
    if settings.dataset.speech == "elevenlabs" and secrets.elevenlabs_api_key is None:
        raise ConfigError(
            'speech = "elevenlabs" needs the ELEVENLABS_API_KEY environment variable '
            "(or ELEVENLABS_API_KEY_FILE, or the systemd credential elevenlabs_api_key)",
            file=str(path),
            key="dataset.speech",
        )
    return settings, secrets
