"""Every module that declares ``__all__`` exports unique names that exist (walks the package, so
new modules are covered without editing this list)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import soundsright_async

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(soundsright_async.__path__, "soundsright_async.")
    if not m.name.endswith("__main__")
)


def test_walk_finds_the_package_modules() -> None:
    assert "soundsright_async.audio.metrics" in MODULES
    assert "soundsright_async.validator.judging" in MODULES
    assert len(MODULES) > 40


@pytest.mark.parametrize("name", MODULES)
def test_all_is_unique_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"
