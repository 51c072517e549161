from __future__ import annotations

from pathlib import Path

import pytest

from soundsright_async import ConfigError
from soundsright_async.config import load_miner_settings, resolve_secret
from soundsright_async.validator.settings import load_validator_settings

ROOT = Path(__file__).resolve().parent.parent
REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
MODEL = f"""
[model]
competition = "denoising_16000hz"
namespace = "ns"
name = "model"
revision = "{REV}"
"""


def _write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_configs_are_valid() -> None:
    settings, secrets = load_validator_settings(ROOT / "config/validator.toml", env={})
    assert settings.netuid == 105
    assert settings.chain.network == "finney"
    assert settings.dataset.speech is None  # unset: the network decides (resolve_sources)
    assert settings.scoring.workers == 0
    assert settings.wallet.path == Path.home() / ".bittensor/wallets"
    assert secrets.elevenlabs_api_key is None
    miner = load_miner_settings(ROOT / "config/miner.toml")
    assert miner.model.competition == "DENOISING_16000HZ"
    assert miner.model.revision == REV


def test_defaults_and_normalisation(tmp_path: Path) -> None:
    settings, _ = load_validator_settings(_write(tmp_path, ""), env={})
    assert settings.data_dir == Path.home() / ".soundsright"
    assert settings.logging.format == "auto"
    miner = load_miner_settings(_write(tmp_path, MODEL))
    assert miner.model.competition == "DENOISING_16000HZ"  # canonical name
    with pytest.raises(Exception, match="frozen"):
        miner.netuid = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("netuid = 1\nbogus = 2\n", "bogus: unknown key"),
        ("[chain]\nnetwork = 'finney'\nendpoint = 'x'\n", "chain.endpoint: unknown key"),
        ('netuid = "105"\n', "netuid: Input should be a valid integer (got '105')"),
        ("netuid = -1\n", "netuid: Input should be greater than or equal to 0"),
        ("[scoring]\nworkers = 1.5\n", "scoring.workers: Input should be a valid integer"),
        ("[logging]\nformat = 'xml'\n", "logging.format: Input should be 'auto', 'json' or"),
        ("[chain]\nnetwork = 'mainnet'\n", "chain.network: must be one of finney, test, local"),
        ("[chain]\nnetwork = 'localnet'\n", 'chain: network = "localnet" needs localnet_path'),
        ("chain = 3\n", "chain: Input should be a valid dictionary or instance"),
        ("netuid = 1\nnetuid = 2\n", "invalid TOML: Cannot overwrite a value"),
        ("[dataset]\nelevenlabs_api_key = 'sk-123'\n", "dataset.elevenlabs_api_key: secrets are"),
        ("[dataset]\nsize = 0\n", "dataset.size: Input should be greater than or equal to 1"),
    ],
)
def test_bad_validator_configs_name_file_key_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_validator_settings(path, env={})
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: ")
    assert message in line


def test_a_config_with_several_problems_lists_them_all(tmp_path: Path) -> None:
    text = "netuid = -1\n[dataset]\nnoise = 'pink'\nrir = 1\n[wallet]\nnam = 'x'\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_validator_settings(path, env={})
    assert info.value.lines() == [
        f"{path}: netuid: Input should be greater than or equal to 0",
        f"{path}: wallet.nam: unknown key",
        f"{path}: dataset.noise: Input should be 'synthetic' or 'wham' (got 'pink')",
        f"{path}: dataset.rir: Input should be 'synthetic' or 'arni' (got 1)",
    ]
    assert str(info.value) == "\n".join(info.value.lines())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("netuid = 1\n", "model: missing required key"),
        (MODEL.replace(REV, "main"), "model.revision: must be a 40-character lowercase hex"),
        (MODEL.replace(REV, REV.upper()), "model.revision: must be a 40-character"),
        (MODEL.replace("denoising_16000hz", "X"), "model.competition: unknown competition 'X'"),
        (MODEL + "\n[model2]\n", "model2: unknown key"),
    ],
)
def test_bad_miner_configs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_miner_settings(_write(tmp_path, text))
    assert message in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_validator_settings(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bin\.toml: not UTF-8 text"):
        load_validator_settings(bad, env={})


def test_elevenlabs_needs_its_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "[dataset]\nspeech = 'elevenlabs'\n")
    with pytest.raises(ConfigError) as info:
        load_validator_settings(path, env={})
    assert str(info.value).startswith(f'{path}: dataset.speech: speech = "elevenlabs" needs')
    _, secrets = load_validator_settings(path, env={"ELEVENLABS_API_KEY": "sk-env\n"})
    assert secrets.elevenlabs_api_key is not None
    assert secrets.elevenlabs_api_key.get_secret_value() == "sk-env"
    assert "sk-env" not in repr(secrets)


def test_secret_sources_in_order(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hf_token").write_text("from-credential")
    env = {"HF_TOKEN_FILE": str(key_file), "CREDENTIALS_DIRECTORY": str(creds)}

    def value(e: dict[str, str]) -> str | None:
        s = resolve_secret("HF_TOKEN", e)
        return s.get_secret_value() if s else None

    assert value({**env, "HF_TOKEN": "from-env"}) == "from-env"
    assert value(env) == "from-file"
    assert value({"CREDENTIALS_DIRECTORY": str(creds)}) == "from-credential"
    assert value({"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None
    assert value({}) is None
    with pytest.raises(ConfigError, match="HF_TOKEN_FILE: cannot read secret file"):
        resolve_secret("HF_TOKEN", {"HF_TOKEN_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_secret("HF_TOKEN", {"HF_TOKEN_FILE": str(tmp_path / "empty")})
    path = _write(tmp_path, "")
    with pytest.raises(ConfigError, match=rf"^{path}: HF_TOKEN_FILE: cannot read"):
        load_validator_settings(path, env={"HF_TOKEN_FILE": str(tmp_path / "missing")})
