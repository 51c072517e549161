"""Which speech, noise and RIR sources a validator uses: a pure function of the network, the
``[dataset]`` settings and whether an ElevenLabs key is present.

* On the real networks (``finney``, ``test``) a source left unset in ``[dataset]`` is the
  production one: ElevenLabs speech, WHAM! noise, Arni rooms. Offline sources are used there
  only when the config names them explicitly (``speech = "espeak"`` etc.).
* Anywhere else (``localnet``, ``local``, a ``ws://`` URL) an unset source is the offline one:
  espeak-ng speech, synthetic noise, synthetic rooms.
* ElevenLabs speech without an API key is a configuration error (one clear line at start-up).

The validator calls ``resolve_sources(settings.chain.network, settings.dataset,
secrets.elevenlabs_api_key is not None)`` once at start-up and passes the result to
``build_sources``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..._exceptions import ConfigError
from ...config import DatasetSettings

__all__ = ["PRODUCTION_NETWORKS", "SourceChoice", "resolve_sources"]

PRODUCTION_NETWORKS = frozenset({"finney", "test"})

SpeechName = Literal["espeak", "elevenlabs"]
NoiseName = Literal["synthetic", "wham"]
RirName = Literal["synthetic", "arni"]


@dataclass(frozen=True, slots=True)
class SourceChoice:
    speech: SpeechName
    noise: NoiseName
    rir: RirName

    @property
    def offline(self) -> tuple[str, ...]:
        """The kinds (``speech``, ``noise``, ``rir``) served by an offline source."""
        return tuple(
            kind
            for kind, name in (("speech", self.speech), ("noise", self.noise), ("rir", self.rir))
            if name in ("espeak", "synthetic")
        )


def resolve_sources(
    network: str, settings: DatasetSettings, have_elevenlabs_key: bool
) -> SourceChoice:
    """The sources to use; raises ``ConfigError`` when ElevenLabs is chosen without a key."""
    production = network in PRODUCTION_NETWORKS
    speech: SpeechName = settings.speech or ("elevenlabs" if production else "espeak")
    noise: NoiseName = settings.noise or ("wham" if production else "synthetic")
    rir: RirName = settings.rir or ("arni" if production else "synthetic")
    if speech == "elevenlabs" and not have_elevenlabs_key:
        why = (
            f'the {network} network uses ElevenLabs speech unless [dataset] sets speech = "espeak"'
            if settings.speech is None
            else 'speech = "elevenlabs"'
        )
        raise ConfigError(
            f"{why}; it needs the ELEVENLABS_API_KEY environment variable "
            "(or ELEVENLABS_API_KEY_FILE, or the systemd credential elevenlabs_api_key)",
            key="dataset.speech",
        )
    return SourceChoice(speech, noise, rir)
