"""Benchmark dataset generation: clean speech, noise, reverb, mixing, manifest.

    spec = DatasetSpec(get_competition("DENOISING_16000HZ"), count=25, seed=7, out=Path("ds"))
    dataset = await generate_dataset(spec)            # offline sources, own process pool

See docs/datasets.md for the sources, the mixing rules and the manifest format.
"""

from __future__ import annotations

from .errors import (
    CorpusError,
    DatasetError,
    SourceUnavailableError,
    SpeechAccountError,
    SpeechSourceError,
)
from .espeak import EspeakSource, espeak_synthesize
from .generate import Dataset, DatasetSpec, Sources, generate_dataset, offline_sources
from .manifest import MANIFEST_NAME, FileEntry, Manifest
from .noise import SyntheticNoiseSource
from .rir import SyntheticRirSource
from .sentences import Prompter
from .sources import NoiseSource, RirSource
from .speech import SpeechClip, SpeechRequest, SpeechSource

__all__ = [
    "MANIFEST_NAME",
    "CorpusError",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "EspeakSource",
    "FileEntry",
    "Manifest",
    "NoiseSource",
    "Prompter",
    "RirSource",
    "SourceUnavailableError",
    "Sources",
    "SpeechAccountError",
    "SpeechClip",
    "SpeechRequest",
    "SpeechSource",
    "SpeechSourceError",
    "SyntheticNoiseSource",
    "SyntheticRirSource",
    "espeak_synthesize",
    "generate_dataset",
    "offline_sources",
]
