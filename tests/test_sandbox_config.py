"""The ``[sandbox]`` settings section: defaults, the shipped config, validation errors, and how
``sandbox.setup`` turns the settings into the runner's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundsright_async._exceptions import ConfigError
from soundsright_async.config import EngineSettings, SandboxSettings
from soundsright_async.sandbox.client import ClientLimits, StepTimeouts
from soundsright_async.sandbox.setup import runner_config
from soundsright_async.validator.settings import load_validator_settings

SHIPPED = Path(__file__).parent.parent / "config" / "validator.toml"


def load(tmp_path: Path, text: str) -> SandboxSettings:
    path = tmp_path / "v.toml"
    path.write_text(text)
    return load_validator_settings(path, env={})[0].sandbox


def test_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    assert s == SandboxSettings()
    assert s.engines == [EngineSettings()]
    assert (s.engines[0].url, s.engines[0].kind, s.engines[0].run_slots) == (None, "podman", 1)
    assert (s.owner, s.firewall, s.bridge_prefix, s.build_network) == (
        "validator",
        "iptables",
        "srbx",
        "none",
    )


def test_shipped_config_documents_every_key() -> None:
    settings, _ = load_validator_settings(SHIPPED, env={})
    assert settings.sandbox == SandboxSettings()
    text = SHIPPED.read_text()
    assert "[[sandbox.engines]]" in text
    for key in [*SandboxSettings.model_fields, *EngineSettings.model_fields]:
        assert key == "engines" or f"{key} =" in text, key


def test_engines_and_gpus(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        '[[sandbox.engines]]\nname = "a"\nurl = "unix:///run/a.sock"\nrun_slots = 3\n'
        '[[sandbox.engines]]\nname = "b"\nurl = "tcp://10.0.0.2:2376"\nkind = "docker"\n'
        'gpus = ["0", "1"]\ngpu_driver = "nvidia"\ntls_ca = "/etc/sr/ca.pem"\n'
        'tls_cert = "/etc/sr/cert.pem"\ntls_key = "/etc/sr/key.pem"\n'
        '[[sandbox.engines]]\nname = "c"\nurl = "tcp://127.0.0.1:2375"\nhost_check = false\n',
    )
    a, b, c = s.engines
    assert (a.name, a.url, a.run_slots, a.gpus) == ("a", "unix:///run/a.sock", 3, [])
    assert (b.kind, b.gpus, b.gpu_driver) == ("docker", ["0", "1"], "nvidia")
    assert (b.tls_ca, b.tls_cert, b.tls_key) == (
        Path("/etc/sr/ca.pem"),
        Path("/etc/sr/cert.pem"),
        Path("/etc/sr/key.pem"),
    )
    assert (a.tls_ca, a.host_check, c.host_check) == (None, True, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sandbox]\nengines = []", "sandbox.engines: List should have at least 1 item"),
        ('[sandbox]\nbridge_prefix = "Bad-"', "sandbox.bridge_prefix: String should match"),
        ('[sandbox]\nbridge_prefix = "toolong7"', "sandbox.bridge_prefix: String should match"),
        ('[sandbox]\nowner = "a b"', "sandbox.owner: String should match"),
        ('[sandbox]\nfirewall = "nft"', "sandbox.firewall: Input should be 'iptables' or 'off'"),
        ('[sandbox]\nbuild_network = "host"', "sandbox.build_network: Input should be"),
        ("[sandbox]\nmax_concurrent_builds = 0", "sandbox.max_concurrent_builds: Input should"),
        ("[sandbox]\nbuild_timeout_s = 0", "sandbox.build_timeout_s: Input should be greater"),
        ("[sandbox]\nmemory_mb = 10", "sandbox.memory_mb: Input should be greater than or"),
        ("[sandbox]\ncpus = 0", "sandbox.cpus: Input should be greater than 0"),
        ("[sandbox]\npids_limit = 4", "sandbox.pids_limit: Input should be greater than or"),
        ("[sandbox]\nenhance_factor_48k = 0.5", "sandbox.enhance_factor_48k: Input should be"),
        ("[sandbox]\nenhance_timeout_s = -1", "sandbox.enhance_timeout_s: Input should be"),
        ('[sandbox]\nmemory_mb = "16384"', "sandbox.memory_mb: Input should be a valid integer"),
        ("[sandbox]\nmax_download_bytes = 10", "sandbox.max_download_bytes: Input should be"),
        ("[sandbox]\ngpu = 1", "sandbox.gpu: unknown key"),
        ('[sandbox]\nregistry_token = "x"', "secrets are not read from the config file"),
        ('[[sandbox.engines]]\nurl = "/run/podman.sock"', "must be a unix:// or tcp:// URL"),
        ("[[sandbox.engines]]\nrun_slots = 0", "run_slots: Input should be greater than or"),
        ('[[sandbox.engines]]\nkind = "lxc"', "kind: Input should be 'podman' or 'docker'"),
        ('[[sandbox.engines]]\nname = "a/b"', "name: String should match"),
        ('[[sandbox.engines]]\ngpu_driver = "rocm"', "gpu_driver: Input should be"),
        (
            '[[sandbox.engines]]\nurl = "tcp://10.0.0.2:2375"',
            "tcp://10.0.0.2:2375: the engine API is root on its host; reach it over the network "
            "only with mutual TLS",
        ),
        (
            '[[sandbox.engines]]\nurl = "tcp://10.0.0.2:2376"\ntls_ca = "/ca.pem"',
            "tls_ca, tls_cert and tls_key go together",
        ),
        (
            '[[sandbox.engines]]\ntls_ca = "/a"\ntls_cert = "/b"\ntls_key = "/c"',
            "TLS files need a tcp:// url",
        ),
        (
            '[[sandbox.engines]]\nname = "a"\n[[sandbox.engines]]\nname = "a"',
            "engine names must differ: a is used twice",
        ),
    ],
)
def test_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text + "\n")
    assert message in str(info.value)


def test_settings_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        SandboxSettings().cpus = 3.0  # type: ignore[misc]


def test_runner_config_follows_the_settings(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "[sandbox]\n"
        'owner = "v1"\nbuild_timeout_s = 120.0\nmax_concurrent_builds = 3\nkeep_images = true\n'
        "status_timeout_s = 11.0\nprepare_timeout_s = 12.0\nupload_timeout_s = 13.0\n"
        "enhance_timeout_s = 14.0\nenhance_factor_48k = 2.0\ndownload_timeout_s = 15.0\n"
        "reset_timeout_s = 16.0\nmax_download_bytes = 4096\nmax_extracted_bytes = 8192\n"
        "zip_member_slack = 0\n",
    )
    c = runner_config(s)
    assert (c.owner, c.build_timeout_s, c.max_concurrent_builds, c.keep_images) == (
        "v1",
        120.0,
        3,
        True,
    )
    assert c.timeouts == StepTimeouts(11.0, 12.0, 13.0, 14.0, 15.0, 16.0)
    assert c.timeouts.for_rate(48000, c.enhance_factor_48k).enhance == 28.0
    assert c.timeouts.for_rate(16000, c.enhance_factor_48k).enhance == 14.0
    assert c.client == ClientLimits(
        max_download_bytes=4096, max_extracted_bytes=8192, member_slack=0
    )
