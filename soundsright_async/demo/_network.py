"""A whole subnet on one machine: a localnet file, wallets, a git hub of model repos, and the
config files of one or more validators and miners, all under one directory.

Used by ``soundsright demo`` and by the end-to-end tests. Nothing here starts a process; see
``_procs`` for that.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..chain._localnet_db import LocalnetDB
from ..wallet import create_wallet

__all__ = ["LocalNetwork", "MinerSpec", "free_port", "git_commit_dir"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@localhost",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@localhost",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def git_commit_dir(
    src: Path, hub: Path, repo_id: str, *, extra: dict[str, bytes] | None = None
) -> str:
    """Commit the files of ``src`` (plus ``extra``) as the next commit of the bare repository
    ``hub/<repo_id>``; returns the commit id (what a miner commits to)."""
    work = hub.parent / "work" / repo_id
    bare = hub / repo_id
    if not bare.exists():
        bare.mkdir(parents=True)
        _git("init", "-q", "--bare", cwd=bare)
        work.mkdir(parents=True)
        _git("init", "-q", "-b", "main", cwd=work)
    _git("rm", "-rq", "--ignore-unmatch", ".", cwd=work)
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts or path.is_dir():
            continue
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    for rel_name, data in (extra or {}).items():
        dest = work / rel_name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "--allow-empty", "-m", f"model {repo_id}", cwd=work)
    _git("push", "-q", str(bare), "main", cwd=work)
    return _git("rev-parse", "HEAD", cwd=work)


@dataclass
class MinerSpec:
    name: str
    competition: str
    namespace: str
    model: str
    revision: str
    port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)

    def data_dir(self, root: Path) -> Path:
        return root / "miners" / self.name


@dataclass
class LocalNetwork:
    root: Path
    netuid: int = 7
    block_time: float = 1.0
    weights_rate_limit: int = 5
    db: LocalnetDB = field(init=False)
    miners: list[MinerSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = LocalnetDB(self.root / "localnet.sqlite")
        self.db.init(
            netuid=self.netuid,
            block_time=self.block_time,
            weights_rate_limit=self.weights_rate_limit,
        )

    @property
    def wallets(self) -> Path:
        return self.root / "wallets"

    @property
    def hub(self) -> Path:
        return self.root / "git" / "hub"

    def wallet(self, name: str, *, stake: float = 0.0, validator: bool = False) -> str:
        """Create (or reuse) wallet ``name`` and register its hotkey; returns the ss58."""
        hot = self.wallets / name / "hotkeys" / "default"
        if not hot.exists():
            create_wallet(name, "default", self.wallets)
        from ..wallet import load_hotkey

        ss58 = load_hotkey(name, "default", self.wallets).ss58_address
        self.db.register(self.netuid, ss58, ss58, stake=stake, validator=validator)
        return ss58

    def publish(self, src: Path, repo_id: str, *, extra: dict[str, bytes] | None = None) -> str:
        return git_commit_dir(src, self.hub, repo_id, extra=extra)

    def add_miner(
        self, name: str, src: Path, competition: str, *, extra: dict[str, bytes] | None = None
    ) -> MinerSpec:
        self.wallet(name)
        revision = self.publish(src, f"{name}/{src.name}", extra=extra)
        spec = MinerSpec(name, competition, name, src.name, revision)
        self.miners.append(spec)
        return spec

    def miner_config(self, m: MinerSpec, *, interval_s: float = 1.0) -> Path:
        path = self.root / "config" / f"miner-{m.name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"""netuid = {self.netuid}
data_dir = "{m.data_dir(self.root)}"

[chain]
network = "localnet"
localnet_path = "{self.db.path}"
call_timeout_s = 5.0
min_validator_stake = 1000.0

[wallet]
name = "{m.name}"
hotkey = "default"
path = "{self.wallets}"

[logging]
format = "json"
level = "info"

[server]
host = "127.0.0.1"
port = {m.port}
shutdown_timeout_s = 3.0

[health]
port = {m.health_port}

[upkeep]
metagraph_interval_s = {interval_s}
commitment_interval_s = {interval_s}
endpoint_interval_s = {interval_s}
retry_backoff_s = 0.5
retry_backoff_max_s = 2.0
rate_limit_wait_s = 1.0

[model]
competition = "{m.competition}"
namespace = "{m.namespace}"
name = "{m.model}"
revision = "{m.revision}"
"""
        )
        return path

    def validator_config(
        self,
        name: str,
        *,
        competitions: list[str],
        epoch_blocks: int,
        anchor_block: int,
        stop_margin_blocks: int,
        dataset_size: int,
        status_port: int,
        owner: str,
        bridge_prefix: str = "srbx",
        run_slots: int = 1,
        enhance_timeout_s: float = 120.0,
        baseline: list[tuple[str, Path]] = (),  # type: ignore[assignment]
        extra: str = "",
    ) -> Path:
        path = self.root / "config" / f"validator-{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        comps = ", ".join(f'"{c}"' for c in competitions)
        baselines = "".join(
            f'\n[[baseline.models]]\ncompetition = "{c}"\npath = "{p}"\n' for c, p in baseline
        )
        path.write_text(
            f"""netuid = {self.netuid}
data_dir = "{self.root / "validators" / name}"

[chain]
network = "localnet"
localnet_path = "{self.db.path}"
call_timeout_s = 5.0
retries = 1

[wallet]
name = "{name}"
hotkey = "default"
path = "{self.wallets}"

[logging]
format = "json"
level = "info"

[scoring]
workers = 2

[dataset]
size = {dataset_size}

[models]
source = "git"
git_base_url = "{self.hub}"
download_timeout_s = 120.0

[sandbox]
owner = "{owner}"
bridge_prefix = "{bridge_prefix}"
max_concurrent_builds = 2
build_timeout_s = 300.0
memory_mb = 2048
cpus = 1.0
tmpfs_mb = 256
status_timeout_s = 60.0
enhance_timeout_s = {enhance_timeout_s}

[[sandbox.engines]]
name = "local"
run_slots = {run_slots}

[competition]
competitions = [{comps}]
epoch_blocks = {epoch_blocks}
anchor_block = {anchor_block}
stop_margin_blocks = {stop_margin_blocks}
clock_interval_s = {min(1.0, self.block_time)}
judge_wait_s = 120.0

[discovery]
interval_s = 3.0
call_timeout_s = 3.0

[weights]
interval_blocks = 5
retry_backoff_s = 1.0
retry_backoff_max_s = 5.0

[feedback]
call_timeout_s = 3.0
retry_backoff_s = 1.0
retry_backoff_max_s = 5.0

[status]
port = {status_port}

[daemon]
metagraph_interval_s = 2.0
retry_backoff_s = 0.5
retry_backoff_max_s = 3.0
shutdown_timeout_s = 20.0
{baselines}{extra}"""
        )
        return path
