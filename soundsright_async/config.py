"""TOML configuration into typed, validated, frozen settings.

``load_miner_settings(path)`` (and ``validator.settings.load_validator_settings``) read a TOML
file and return settings, or raise ``ConfigError`` whose message is one line:
``FILE: KEY: PROBLEM``. Unknown keys, wrong types (no silent coercion: ``netuid = "105"`` is an
error) and missing required keys are all errors.

Secrets never come from the TOML file. A key that looks like one (``*api_key``, ``*token``,
``*password``, ``*secret``) is refused. Each secret is read, in order, from the environment
variable ``NAME``, from the file named by ``NAME_FILE``, or from the systemd credential
``$CREDENTIALS_DIRECTORY/name`` (``LoadCredential=``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from ._exceptions import ConfigError
from .competitions import get_competition

__all__ = [
    "ChainSettings",
    "DatasetSettings",
    "EngineSettings",
    "LoggingSettings",
    "MinerFeedbackSettings",
    "MinerHealthSettings",
    "MinerModelSettings",
    "MinerServerSettings",
    "MinerSettings",
    "MinerUpkeepSettings",
    "ModelSourceSettings",
    "SandboxSettings",
    "ScoringSettings",
    "Secrets",
    "WalletSettings",
    "load_miner_settings",
    "resolve_secret",
]


def _expand(p: Path) -> Path:
    return Path(os.path.expandvars(str(p))).expanduser()


# A path from the TOML file: a string is accepted, and ~ and $VARS are expanded.
FilePath = Annotated[Path, Strict(False), AfterValidator(_expand)]
_SECRET_KEY = re.compile(r"(api_?key|token|password|passphrase|secret)$", re.IGNORECASE)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_NAMED_NETWORKS = ("finney", "test", "local", "localnet")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


class LoggingSettings(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: pretty console output on a TTY, JSON lines otherwise (systemd journal)."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class ChainSettings(_Section):
    network: str = "finney"
    """``finney``, ``test``, ``local``, ``localnet`` (embedded dev chain) or a ``ws(s)://`` URL."""
    localnet_path: FilePath | None = None
    """SQLite file of the embedded dev chain; required when ``network = "localnet"``."""
    call_timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=100)
    """Extra attempts for a chain read after a dropped connection or a missed deadline."""
    backoff_s: float = Field(default=1.0, gt=0)
    """First wait before reconnecting; doubles per attempt, capped at ``backoff_max_s``."""
    backoff_max_s: float = Field(default=30.0, gt=0)
    min_validator_stake: float = Field(default=1000.0, ge=0)
    """Miner endpoints only answer validators with a permit and at least this much stake
    (total stake weight, in alpha of the subnet)."""

    @field_validator("network")
    @classmethod
    def _network(cls, v: str) -> str:
        if v in _NAMED_NETWORKS or v.startswith(("ws://", "wss://")):
            return v
        raise ValueError(f"must be one of {', '.join(_NAMED_NETWORKS)} or a ws:// URL, not {v!r}")

    @model_validator(mode="after")
    def _localnet_needs_path(self) -> ChainSettings:
        if self.network == "localnet" and self.localnet_path is None:
            raise ValueError('network = "localnet" needs localnet_path')
        return self


class WalletSettings(_Section):
    name: str = "default"
    hotkey: str = "default"
    path: FilePath = Path("~/.bittensor/wallets")


class ScoringSettings(_Section):
    workers: int = Field(default=0, ge=0)
    """Metric worker processes; 0 means one per available CPU."""


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WHAM_URL = "https://my-bucket-a8b4b49c25c811ee9a7e8bba05fa24c7.s3.amazonaws.com/high_res_wham.zip"
_ARNI_URLS = tuple(
    f"https://zenodo.org/records/6985104/files/IR_Arni_upload_numClosed_{part}.zip?download=1"
    for part in ("0-5", "6-15", "16-25", "26-35", "36-45", "46-55")
)


class DatasetSettings(_Section):
    speech: Literal["espeak", "elevenlabs"] | None = None
    noise: Literal["synthetic", "wham"] | None = None
    rir: Literal["synthetic", "arni"] | None = None
    """Unset (``None``): the network decides (``audio.dataset.choice.resolve_sources``):
    ElevenLabs / WHAM! / Arni on finney and test, the offline sources elsewhere."""
    size: int = Field(default=25, ge=1, le=10_000)
    """Clean utterances per competition epoch."""
    elevenlabs_concurrency: int = Field(default=4, ge=1, le=64)
    elevenlabs_model: str = "eleven_multilingual_v2"
    elevenlabs_output_format: str = "pcm_44100"
    elevenlabs_max_attempts: int = Field(default=6, ge=1, le=50)
    """Attempts per request (429, 5xx, timeouts and connection errors are retried)."""
    elevenlabs_backoff_base_s: float = Field(default=0.5, gt=0)
    elevenlabs_backoff_max_s: float = Field(default=30.0, gt=0)
    elevenlabs_request_timeout_s: float = Field(default=60.0, gt=0)
    elevenlabs_clip_deadline_s: float = Field(default=300.0, gt=0)
    """Total deadline of one clip, retries included."""
    elevenlabs_base_url: str | None = None
    """API base URL; unset means the SDK's default (production)."""
    wham_url: str = _WHAM_URL
    wham_sha256: str = ""
    """Expected sha256 of the WHAM! zip; empty means not pinned (the size is still checked)."""
    wham_size_bytes: int = Field(default=0, ge=0)
    """Expected size of the WHAM! zip; 0 means the server's Content-Length."""
    arni_urls: list[str] = Field(default_factory=lambda: list(_ARNI_URLS), min_length=1)
    arni_sha256: list[str] = Field(default_factory=list)
    """Expected sha256 per Arni zip (same order as ``arni_urls``), or empty for not pinned."""
    arni_size_bytes: list[int] = Field(default_factory=list)
    corpus_max_bytes: int = Field(default=200 * 2**30, ge=1)
    """Refuse a corpus archive (or its extracted content) larger than this."""

    @field_validator("elevenlabs_output_format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        if v == "pcm_44100" or v.startswith("mp3_44100_"):
            return v
        raise ValueError(f"must be pcm_44100 or mp3_44100_<kbps>, not {v!r}")

    @field_validator("wham_sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if v and not _SHA256.match(v):
            raise ValueError(f"must be 64 lowercase hex digits or empty, not {v!r}")
        return v

    @field_validator("arni_sha256")
    @classmethod
    def _shas(cls, v: list[str]) -> list[str]:
        for item in v:
            if not _SHA256.match(item):
                raise ValueError(f"must be 64 lowercase hex digits, not {item!r}")
        return v

    @model_validator(mode="after")
    def _arni_lengths(self) -> DatasetSettings:
        n = len(self.arni_urls)
        for key in ("arni_sha256", "arni_size_bytes"):
            if getattr(self, key) and len(getattr(self, key)) != n:
                raise ValueError(f"{key} must be empty or have one entry per arni_urls entry")
        return self


_GIT_URL_SCHEMES = ("file://", "http://", "https://", "ssh://", "git://")


class ModelSourceSettings(_Section):
    """Where miners' models are fetched from, and the caps and deadline of one download."""

    source: Literal["huggingface", "git"] = "huggingface"
    """``huggingface`` (production) or ``git`` (a local hub of bare repositories)."""
    hf_endpoint: str = "https://huggingface.co"
    git_base_url: str | None = None
    """Models are fetched from ``{git_base_url}/{namespace}/{name}``; required for ``git``."""
    download_timeout_s: float = Field(default=1800.0, gt=0)
    """Total deadline of one model download."""
    max_total_bytes: int = Field(default=20 * 1024**3, ge=1)
    max_files: int = Field(default=10_000, ge=1)
    max_file_bytes: int = Field(default=10 * 1024**3, ge=1)
    max_concurrent_downloads: int = Field(default=2, ge=1, le=64)

    @field_validator("hf_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s):// URL, not {v!r}")
        return v.rstrip("/")

    @field_validator("git_base_url")
    @classmethod
    def _git_url(cls, v: str | None) -> str | None:
        if v is None or v.startswith(_GIT_URL_SCHEMES):
            return v
        if v.startswith(("/", "~", "$")):
            return str(_expand(Path(v)))
        raise ValueError(f"must be an absolute path or a file/http(s)/ssh/git URL, not {v!r}")

    @model_validator(mode="after")
    def _git_needs_url(self) -> ModelSourceSettings:
        if self.source == "git" and self.git_base_url is None:
            raise ValueError('source = "git" needs git_base_url')
        return self


class EngineSettings(_Section):
    """One container engine (a Docker or Podman API socket)."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    url: str | None = None
    """``unix:///path.sock`` or ``tcp://host:port``; unset: ``DOCKER_HOST``, then the standard
    Podman/Docker sockets."""
    kind: Literal["podman", "docker"] = "podman"
    run_slots: int = Field(default=1, ge=1, le=64)
    """Models run at once on this engine (CPU-only); with ``gpus`` it is one per GPU."""
    gpus: list[str] = Field(default_factory=list)
    """GPU ids handed out one per running model (CDI ``nvidia.com/gpu=ID``); empty: no GPU."""
    gpu_driver: Literal["cdi", "nvidia"] = "cdi"
    tls_ca: FilePath | None = None
    """Mutual TLS to a ``tcp://`` engine (as ``docker --tlsverify``): the CA that signed the
    engine's certificate, and this validator's client certificate and key (PEM files)."""
    tls_cert: FilePath | None = None
    tls_key: FilePath | None = None
    host_check: bool = True
    """Refuse an engine whose host name is not this host's (builds bind-mount this host's
    build directory; models are reached at their bridge address). Turn off only when the
    validator runs in a container and the engine is its host."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or v.startswith(("unix://", "tcp://", "http://", "https://")):
            return v
        raise ValueError(f"must be a unix:// or tcp:// URL, not {v!r}")

    @model_validator(mode="after")
    def _tls(self) -> EngineSettings:
        files = (self.tls_ca, self.tls_cert, self.tls_key)
        if any(f is not None for f in files) and not all(f is not None for f in files):
            raise ValueError("tls_ca, tls_cert and tls_key go together")
        tls = self.tls_ca is not None
        network = self.url is not None and not self.url.startswith("unix://")
        if tls and not network:
            raise ValueError("TLS files need a tcp:// url")
        if network and not tls:
            assert self.url is not None
            host = urlsplit(self.url.replace("tcp://", "http://", 1)).hostname or ""
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise ValueError(
                    f"{self.url}: the engine API is root on its host; reach it over the network "
                    "only with mutual TLS (tls_ca, tls_cert, tls_key)"
                )
        return self


class SandboxSettings(_Section):
    """How model containers are built, locked down and benchmarked (docs/sandbox.md)."""

    engines: list[EngineSettings] = Field(default_factory=lambda: [EngineSettings()], min_length=1)

    @field_validator("engines")
    @classmethod
    def _unique_names(cls, v: list[EngineSettings]) -> list[EngineSettings]:
        names = [e.name for e in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"engine names must differ: {', '.join(twice)} is used twice")
        return v

    owner: str = Field(default="validator", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Label value on everything this daemon creates; the start-up sweep removes only these."""
    firewall: Literal["iptables", "off"] = "iptables"
    firewall_state_dir: FilePath = Path("/run/soundsright-firewall")
    """Lock file and holder registry shared by every process that holds the rule pair."""
    deny_userns: bool = True
    """Model containers get ``seccomp_base`` with user (and other new) namespaces denied."""
    seccomp_base: FilePath = Path("/usr/share/containers/seccomp.json")
    bridge_prefix: str = Field(default="srbx", pattern=r"^[a-z0-9]{2,6}$")
    build_network: Literal["none", "egress"] = "none"
    """``none``: builds have no network. ``egress``: the builder gets its own bridge, behind the
    host firewall pair (it can reach package indexes, never the host's services)."""
    build_dns: list[str] = Field(default_factory=list)
    """DNS servers for ``egress`` builds (the bridge's own resolver is on the host, blocked)."""
    builder_image: str = "localhost/soundsright-builder:latest"
    base_images: list[str] = Field(
        default_factory=lambda: ["localhost/soundsright-base:latest"], min_length=1
    )
    """The only images a model may build ``FROM`` (besides its own earlier stages)."""
    build_memory_mb: int = Field(default=4096, ge=64)
    build_disk_mb: int = Field(default=8192, ge=64)
    """The builder's storage (a tmpfs, so RAM): caps everything a build writes."""
    build_cpus: float = Field(default=2.0, gt=0, le=1024)
    build_pids_limit: int = Field(default=1024, ge=32)
    build_dir: FilePath | None = None
    """Work files of builds (context tars, base image archives); unset: $TMPDIR."""
    max_concurrent_builds: int = Field(default=2, ge=1, le=64)
    build_timeout_s: float = Field(default=900.0, gt=0)
    build_log_bytes: int = Field(default=65536, ge=1024)
    memory_mb: int | None = Field(default=None, ge=64)
    """Per model container; unset: 80% of the engine host's memory / run slots - tmpfs_mb
    (at most 16 GiB). A value that does not fit the host is refused at start-up."""
    cpus: float | None = Field(default=None, gt=0, le=1024)
    """Per model container; unset: the host's CPUs / run slots. More than fits is refused."""
    pids_limit: int = Field(default=512, ge=16)
    tmpfs_mb: int = Field(default=4096, ge=16)
    extra_tmpfs: list[str] = Field(default_factory=list)
    log_bytes: int = Field(default=1048576, ge=4096)
    status_timeout_s: float = Field(default=100.0, gt=0)
    prepare_timeout_s: float = Field(default=30.0, gt=0)
    upload_timeout_s: float = Field(default=30.0, gt=0)
    enhance_timeout_s: float = Field(default=600.0, gt=0)
    enhance_factor_48k: float = Field(default=1.75, ge=1)
    download_timeout_s: float = Field(default=30.0, gt=0)
    reset_timeout_s: float = Field(default=10.0, gt=0)
    max_download_bytes: int = Field(default=1024**3, ge=1024)
    max_extracted_bytes: int = Field(default=2 * 1024**3, ge=1024)
    zip_member_slack: int = Field(default=8, ge=0, le=10_000)
    keep_images: bool = False


class MinerModelSettings(_Section):
    """The one model a miner serves."""

    competition: str
    namespace: str = Field(min_length=1, max_length=96)
    name: str = Field(min_length=1, max_length=96)
    revision: str

    @field_validator("competition")
    @classmethod
    def _competition(cls, v: str) -> str:
        try:
            return get_competition(v).name
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str) -> str:
        if not _COMMIT.match(v):
            raise ValueError(f"must be a 40-character lowercase hex commit id, not {v!r}")
        return v


class _NodeSettings(_Section):
    netuid: int = Field(default=105, ge=0, le=65535)
    data_dir: FilePath = Path("~/.soundsright")
    chain: ChainSettings = ChainSettings()
    wallet: WalletSettings = WalletSettings()
    logging: LoggingSettings = LoggingSettings()


def _ip(v: str, *, allow_unspecified: bool) -> str:
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"must be an IPv4 or IPv6 address, not {v!r}") from None
    if addr.is_unspecified and not allow_unspecified:
        raise ValueError(f"must be a routable address, not the unspecified {v!r}")
    return str(addr)


class MinerServerSettings(_Section):
    """The signed HTTP server validators call (``/v3/model``, ``/v3/feedback``)."""

    host: str = "0.0.0.0"
    """Listen address (``0.0.0.0`` / ``::`` for all interfaces)."""
    port: int = Field(default=6001, ge=0, le=65535)
    """Listen port; 0 picks a free port (tests)."""
    external_ip: str | None = None
    """The ip published on chain; defaults to ``host`` unless that is ``0.0.0.0``/``::``."""
    external_port: int | None = Field(default=None, ge=1, le=65535)
    """The port published on chain; defaults to the port the server is bound to."""
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    request_timeout_s: float = Field(default=10.0, gt=0)
    """Deadline of one request's handler (storing Feedback included)."""
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    """On SIGTERM/SIGINT: how long in-flight requests may take to finish."""
    max_connections: int = Field(default=768, ge=8, le=1_000_000)
    """Open connections at most (lowered at start to fit ``RLIMIT_NOFILE`` minus the health
    server's ``max_connections`` and 64 spare descriptors)."""
    reserve_connections: int = Field(default=128, ge=1)
    """Slots only admitted callers (registered validators with a permit) may use."""
    max_pending_per_ip: int = Field(default=32, ge=1)
    """Connections one address may hold before it is admitted (more are refused at once)."""
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """A request's headers must arrive within this many seconds of connecting."""
    body_timeout_s: float = Field(default=20.0, gt=0, le=600)
    """A request's body must arrive within this many seconds of its headers."""
    keepalive_timeout_s: float = Field(default=15.0, gt=0, le=600)
    """An idle keep-alive connection is closed after this many seconds."""

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _ip(v, allow_unspecified=True)

    @model_validator(mode="after")
    def _reserve_fits(self) -> MinerServerSettings:
        if self.reserve_connections >= self.max_connections:
            raise ValueError("reserve_connections must be smaller than max_connections")
        return self

    @field_validator("external_ip")
    @classmethod
    def _external_ip(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v, allow_unspecified=False)

    def published_ip(self) -> str | None:
        """The ip to publish, or None when it must be configured (``host`` is unspecified)."""
        if self.external_ip is not None:
            return self.external_ip
        return None if ipaddress.ip_address(self.host).is_unspecified else self.host


class MinerHealthSettings(_Section):
    """Local, unauthenticated ``GET /healthz`` and ``GET /metrics`` (Prometheus text)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=6000, ge=0, le=65535)
    max_connections: int = Field(default=32, ge=2, le=1024)
    """Open connections at most (local scrapers and probes only)."""

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _ip(v, allow_unspecified=True)


class MinerUpkeepSettings(_Section):
    """Intervals of the miner's chain tasks and their back-off after failures."""

    metagraph_interval_s: float = Field(default=120.0, gt=0)
    """How often the metagraph (who may call us) is re-read."""
    commitment_interval_s: float = Field(default=600.0, gt=0)
    """How often our commitment on chain is compared with the configured model."""
    endpoint_interval_s: float = Field(default=600.0, gt=0)
    """Longest wait between two checks of our published endpoint."""
    retry_backoff_s: float = Field(default=5.0, gt=0)
    """First wait after a failed chain call or a refused write; doubles per failure."""
    retry_backoff_max_s: float = Field(default=300.0, gt=0)
    rate_limit_wait_s: float = Field(default=600.0, gt=0)
    """Wait after the chain answers a write with a rate limit."""
    restart_backoff_s: float = Field(default=1.0, gt=0)
    """First wait before restarting a crashed task; doubles per crash."""
    restart_backoff_max_s: float = Field(default=60.0, gt=0)


class MinerFeedbackSettings(_Section):
    """``feedback.jsonl`` in the data dir: append-only, fsync'd, rotated by size."""

    max_file_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)
    """Rotate ``feedback.jsonl`` to ``feedback.jsonl.1`` when an append would pass this size."""
    keep_files: int = Field(default=5, ge=0, le=1000)
    """Rotated files kept (``feedback.jsonl.1`` .. ``.N``); older ones are deleted."""


class MinerSettings(_NodeSettings):
    model: MinerModelSettings
    server: MinerServerSettings = MinerServerSettings()
    health: MinerHealthSettings = MinerHealthSettings()
    upkeep: MinerUpkeepSettings = MinerUpkeepSettings()
    feedback: MinerFeedbackSettings = MinerFeedbackSettings()

    @field_validator("model", mode="before")
    @classmethod
    def _one_model(cls, v: Any) -> Any:
        one = "a miner serves exactly one model; run one miner (hotkey) per competition"
        if isinstance(v, list):
            raise ValueError(f"{len(v)} [[model]] entries: {one}")
        if isinstance(v, Mapping) and isinstance(v.get("competition"), list):
            raise ValueError(f"competition lists {len(v['competition'])} competitions: {one}")
        return v


@dataclass(frozen=True, slots=True)
class Secrets:
    """Secrets resolved from the environment; ``repr`` never shows their values."""

    elevenlabs_api_key: SecretStr | None = None
    hf_token: SecretStr | None = None


def resolve_secret(name: str, env: Mapping[str, str]) -> SecretStr | None:
    """``NAME`` from env, else the file at ``NAME_FILE``, else ``$CREDENTIALS_DIRECTORY/name``."""
    value = env.get(name)
    if value:
        return SecretStr(value.strip())
    candidates = []
    if env.get(f"{name}_FILE"):
        candidates.append((f"{name}_FILE", Path(env[f"{name}_FILE"])))
    if env.get("CREDENTIALS_DIRECTORY"):
        candidates.append(
            ("CREDENTIALS_DIRECTORY", Path(env["CREDENTIALS_DIRECTORY"]) / name.lower())
        )
    for source, path in candidates:
        if source == "CREDENTIALS_DIRECTORY" and not path.exists():
            continue
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read secret file {path}: {exc.strerror}", key=source
            ) from None
        if not text:
            raise ConfigError(f"secret file {path} is empty", key=source)
        return SecretStr(text)
    return None


S = TypeVar("S", bound=_Section)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(path)) from None


def _refuse_secrets(data: Mapping[str, Any], file: str, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _refuse_secrets(value, file, f"{dotted}.")
        elif _SECRET_KEY.search(key):
            env = key.upper() if key.upper() != "API_KEY" else "the provider's *_API_KEY"
            raise ConfigError(
                f"secrets are not read from the config file; set the environment variable {env} "
                f"(or {env}_FILE, or a systemd credential) instead",
                file=file,
                key=dotted,
            )


def _describe(err: Mapping[str, Any]) -> tuple[str, str]:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "missing required key"
    msg = msg.removeprefix("Value error, ")
    if kind.endswith("_type") or kind in ("literal_error", "int_from_float"):
        msg = f"{msg} (got {err['input']!r})"
    return loc, msg


def _validate(model: type[S], data: Mapping[str, Any], file: str) -> S:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        described = [_describe(err) for err in exc.errors(include_url=False)]
        key, problem = described[0]
        raise ConfigError(problem, file=file, key=key, more=tuple(described[1:])) from None


def _load(model: type[S], path: str | os.PathLike[str]) -> S:
    p = Path(path)
    data = _read_toml(p)
    _refuse_secrets(data, str(p))
    return _validate(model, data, str(p))


def load_miner_settings(path: str | os.PathLike[str]) -> MinerSettings:
    return _load(MinerSettings, path)
