"""``soundsright model verify`` end to end with real Podman (see tests/containers/podman.py)."""

from __future__ import annotations

import json

import pytest
from containers.podman import ROOT, engine_url

from soundsright_async.cli import main

pytestmark = pytest.mark.slow


def test_verify_passthrough_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine_url())
    rc = main(
        [
            "model",
            "verify",
            "--path",
            str(ROOT / "examples/models/passthrough"),
            "--competition",
            "DEREVERBERATION_48000HZ",
            "--count",
            "2",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    assert out["passed"] is True
    assert [s["step"] for s in out["steps"]] == [
        "build",
        "start",
        "status",
        "prepare",
        "upload",
        "enhance",
        "download",
        "reset",
        "outputs",
        "score",
    ]
    assert set(out["metrics"]["metrics"]) == {"ESTOI", "SI_SDR"}


def test_verify_reports_failed_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine_url())
    (tmp_path / "Dockerfile").write_text(
        "FROM localhost/soundsright-base:latest\nRUN echo broken-step && exit 7\n"
    )
    rc = main(
        [
            "model",
            "verify",
            "--path",
            str(tmp_path),
            "--competition",
            "DENOISING_16000HZ",
            "--count",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED at step build: build_failed" in out
    assert "broken-step" in out
