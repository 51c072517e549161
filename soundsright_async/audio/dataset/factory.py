"""Build the configured sources (``espeak``/``elevenlabs``, ``synthetic``/``wham``,
``synthetic``/``arni``) from settings and the network; the CLI and the validator call this."""

from __future__ import annotations

from pathlib import Path

from ...config import DatasetSettings, Secrets
from ..pool import ScoringPool
from .choice import resolve_sources
from .espeak import EspeakSource
from .generate import Sources
from .noise import SyntheticNoiseSource
from .rir import SyntheticRirSource
from .sources import NoiseSource, RirSource
from .speech import SpeechSource

__all__ = ["build_sources", "corpora_dir"]


def corpora_dir(data_dir: Path) -> Path:
    """Where downloaded corpora live: ``DATA_DIR/corpora``."""
    return Path(data_dir) / "corpora"


def build_sources(
    settings: DatasetSettings,
    secrets: Secrets,
    *,
    network: str,
    data_dir: Path,
    pool: ScoringPool,
) -> Sources:
    """The sources ``resolve_sources(network, settings, ...)`` chooses; ``ConfigError`` when
    ElevenLabs speech is chosen without an API key."""
    choice = resolve_sources(network, settings, secrets.elevenlabs_api_key is not None)
    speech: SpeechSource
    if choice.speech == "espeak":
        speech = EspeakSource(pool)
    else:
        assert secrets.elevenlabs_api_key is not None  # resolve_sources checked it
        from .elevenlabs import ElevenLabsSource

        speech = ElevenLabsSource.from_settings(
            settings, secrets.elevenlabs_api_key.get_secret_value(), pool=pool
        )
    noise: NoiseSource
    if choice.noise == "synthetic":
        noise = SyntheticNoiseSource()
    else:
        from .corpora import WhamSource

        noise = WhamSource.from_settings(settings, corpora_dir(data_dir), pool=pool)
    rir: RirSource
    if choice.rir == "synthetic":
        rir = SyntheticRirSource()
    else:
        from .corpora import ArniSource

        rir = ArniSource.from_settings(settings, corpora_dir(data_dir), pool=pool)
    return Sources(speech, noise, rir)
