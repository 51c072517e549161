"""Source construction from settings, and the CLI end to end against the fake ElevenLabs API."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from soundsright_async._exceptions import ConfigError
from soundsright_async.audio.dataset.corpora import ArniSource, WhamSource
from soundsright_async.audio.dataset.elevenlabs import ElevenLabsSource
from soundsright_async.audio.dataset.elevenlabs_fake import FakeElevenLabs
from soundsright_async.audio.dataset.espeak import EspeakSource
from soundsright_async.audio.dataset.factory import build_sources
from soundsright_async.audio.dataset.noise import SyntheticNoiseSource
from soundsright_async.audio.dataset.rir import SyntheticRirSource
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.cli import main
from soundsright_async.config import DatasetSettings, Secrets


async def test_build_sources_follows_the_settings(tmp_path: Path) -> None:
    async with ScoringPool(workers=1) as pool:
        offline = build_sources(
            DatasetSettings(), Secrets(), network="localnet", data_dir=tmp_path, pool=pool
        )
        assert isinstance(offline.speech, EspeakSource)
        assert isinstance(offline.noise, SyntheticNoiseSource)
        assert isinstance(offline.rir, SyntheticRirSource)
        settings = DatasetSettings(speech="elevenlabs", noise="wham", rir="arni")
        with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
            build_sources(settings, Secrets(), network="localnet", data_dir=tmp_path, pool=pool)
        secrets = Secrets(elevenlabs_api_key=SecretStr("k"))
        prod = build_sources(
            DatasetSettings(), secrets, network="finney", data_dir=tmp_path, pool=pool
        )
        try:
            assert isinstance(prod.speech, ElevenLabsSource)
            assert isinstance(prod.noise, WhamSource)
            assert isinstance(prod.rir, ArniSource)
            assert len(prod.rir.archives) == 6
            assert prod.rir.dir == tmp_path / "corpora" / "arni"
            assert prod.noise.archives[0].filename == "high_res_wham.zip"
        finally:
            await prod.aclose()


@pytest.fixture
def fake_in_thread() -> Iterator[FakeElevenLabs]:
    """The fake server on its own event loop in a thread (the CLI runs its own loop)."""
    fake = FakeElevenLabs(script=["ok"], default="quota")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with fake:
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield fake
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def test_cli_quota_error_exits_1_and_leaves_no_dataset(
    fake_in_thread: FakeElevenLabs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "validator.toml"
    config.write_text(  # the network defaults to finney: noise must be set to stay offline
        f'data_dir = "{tmp_path}"\n[dataset]\nspeech = "elevenlabs"\nnoise = "synthetic"\n'
        f'elevenlabs_concurrency = 1\nelevenlabs_base_url = "{fake_in_thread.base_url}"\n'
    )
    monkeypatch.setenv("ELEVENLABS_API_KEY", "test-key")
    out = tmp_path / "ds"
    argv = ["dataset", "generate", "--competition", "DENOISING_16000HZ", "--count", "5"]
    argv += ["--seed", "1", "--out", str(out), "--config", str(config), "--workers", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "soundsright: failed: elevenlabs" in err
    assert "quota_exceeded" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validator.toml"]
    assert len(fake_in_thread.tts_requests) == 2


def test_cli_with_a_finney_config_and_no_key_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "validator.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')  # network defaults to finney
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    monkeypatch.delenv("ELEVENLABS_API_KEY_FILE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    out = tmp_path / "ds"
    argv = ["dataset", "generate", "--competition", "DENOISING_16000HZ", "--count", "1"]
    argv += ["--seed", "1", "--out", str(out), "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "the finney network uses ElevenLabs speech unless [dataset] sets" in err[0]
    assert not out.exists()
