from __future__ import annotations

import importlib

import pytest

MODULES = [
    "soundsright_async",
    "soundsright_async.audio",
    "soundsright_async.audio.metrics",
    "soundsright_async.audio.pool",
    "soundsright_async.competitions",
    "soundsright_async.config",
    "soundsright_async.logs",
    "soundsright_async.cli",
    "soundsright_async.sandbox",
    "soundsright_async.validator.judging",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_unique_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"
