from __future__ import annotations

import importlib

import pytest

MODULES = [
    "soundsright_async.audio.dataset",
    "soundsright_async.audio.dataset.constants",
    "soundsright_async.audio.dataset.corpora",
    "soundsright_async.audio.dataset.download",
    "soundsright_async.audio.dataset.elevenlabs",
    "soundsright_async.audio.dataset.elevenlabs_fake",
    "soundsright_async.audio.dataset.errors",
    "soundsright_async.audio.dataset.espeak",
    "soundsright_async.audio.dataset.factory",
    "soundsright_async.audio.dataset.generate",
    "soundsright_async.audio.dataset.manifest",
    "soundsright_async.audio.dataset.mixing",
    "soundsright_async.audio.dataset.noise",
    "soundsright_async.audio.dataset.plan",
    "soundsright_async.audio.dataset.render",
    "soundsright_async.audio.dataset.rir",
    "soundsright_async.audio.dataset.sentences",
    "soundsright_async.audio.dataset.sources",
    "soundsright_async.audio.dataset.speech",
    "soundsright_async.audio.dataset.store",
    "soundsright_async.cli.dataset",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_unique_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_dataset_errors_are_soundsright_errors() -> None:
    from soundsright_async._exceptions import SoundsrightError
    from soundsright_async.audio.dataset import (
        CorpusError,
        DatasetError,
        SpeechAccountError,
        SpeechSourceError,
    )

    assert issubclass(DatasetError, SoundsrightError)
    assert issubclass(SpeechAccountError, SpeechSourceError)
    assert issubclass(SpeechSourceError, DatasetError)
    assert issubclass(CorpusError, DatasetError)
    err = SpeechSourceError("boom", source="elevenlabs", index=3)
    assert (err.source, err.index, str(err)) == ("elevenlabs", 3, "elevenlabs (clip 3): boom")
