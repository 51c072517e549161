"""The ``[models]`` settings section and the sandbox package's public surface."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from soundsright_async._exceptions import ConfigError, SoundsrightError
from soundsright_async.config import ModelSourceSettings
from soundsright_async.sandbox import ModelRejected, ModelSourceError, ModelUnavailable
from soundsright_async.validator.settings import load_validator_settings


def load(tmp_path: Path, text: str) -> ModelSourceSettings:
    path = tmp_path / "v.toml"
    path.write_text(text)
    return load_validator_settings(path, env={})[0].models


def test_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "") == ModelSourceSettings(
        source="huggingface",
        hf_endpoint="https://huggingface.co",
        git_base_url=None,
        download_timeout_s=1800.0,
        max_total_bytes=21474836480,
        max_files=10000,
        max_file_bytes=10737418240,
        max_concurrent_downloads=2,
    )


def test_shipped_config_documents_every_key() -> None:
    shipped = Path(__file__).parent.parent / "config" / "validator.toml"
    settings, _ = load_validator_settings(shipped, env={})
    assert settings.models == ModelSourceSettings()
    text = shipped.read_text()
    for key in ModelSourceSettings.model_fields:
        assert f"{key} =" in text, key


def test_git_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB", "/srv/hub")
    models = load(tmp_path, '[models]\nsource = "git"\ngit_base_url = "$HUB/repos"\n')
    assert (models.source, models.git_base_url) == ("git", "/srv/hub/repos")
    url = load(tmp_path, '[models]\nsource = "git"\ngit_base_url = "http://127.0.0.1:9/"\n')
    assert url.git_base_url == "http://127.0.0.1:9/"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('source = "git"', 'models: source = "git" needs git_base_url'),
        ('source = "s3"', "models.source: Input should be 'huggingface' or 'git'"),
        ('git_base_url = "relative/dir"', "models.git_base_url: must be an absolute path"),
        ('hf_endpoint = "huggingface.co"', "models.hf_endpoint: must be an http(s):// URL"),
        ("max_files = 0", "models.max_files: Input should be greater than or equal to 1"),
        ('max_total_bytes = "1"', "models.max_total_bytes: Input should be a valid integer"),
        ("download_timeout_s = 0", "models.download_timeout_s: Input should be greater than 0"),
        ("max_size = 1", "models.max_size: unknown key"),
        ('hf_token = "x"', "models.hf_token: secrets are not read from the config file"),
    ],
)
def test_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[models]\n{text}\n")
    assert message in str(info.value)


def test_settings_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        ModelSourceSettings().max_files = 3  # type: ignore[misc]


def test_error_tree() -> None:
    assert issubclass(ModelSourceError, SoundsrightError)
    assert issubclass(ModelRejected, ModelSourceError)
    assert issubclass(ModelUnavailable, ModelSourceError)
    assert not issubclass(ModelUnavailable, ModelRejected)


@pytest.mark.parametrize(
    "name",
    [
        "soundsright_async.sandbox",
        "soundsright_async.sandbox.base",
        "soundsright_async.sandbox.cache",
        "soundsright_async.sandbox.fake",
        "soundsright_async.sandbox.git",
        "soundsright_async.sandbox.huggingface",
        "soundsright_async.cli.model",
    ],
)
def test_all_is_sorted_unique_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported)
    assert all(hasattr(module, attr) for attr in exported)
    if name == "soundsright_async.sandbox":
        public = {n for n in dir(module) if not n.startswith("_") and n[0].isupper()}
        public -= {"TYPE_CHECKING"}
        assert public <= set(exported)
