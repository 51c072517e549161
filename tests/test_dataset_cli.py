"""``soundsright dataset generate``: success output and exit code 2 on bad arguments."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from soundsright_async.cli import main


def test_generate_prints_the_manifest_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    argv = ["dataset", "generate", "--competition", "dereverberation_16000hz", "--count", "2"]
    argv += ["--seed", "0", "--out", str(out), "--sentences", "1", "--workers", "1", "--json"]
    assert main(argv) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["competition"] == "DEREVERBERATION_16000HZ"
    assert summary["files"] == 2
    assert summary["seed"] == 0
    assert summary["sources"] == {"speech": "espeak", "rir": "synthetic"}
    assert summary["rt60_s"]["max"] <= 2.0
    assert sorted(p.name for p in (out / "clean").iterdir()) == ["0000.wav", "0001.wav"]
    # human-readable output, replacing the dataset
    assert main([*argv[:-1], "--overwrite"]) == 0
    assert "DEREVERBERATION_16000HZ" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--competition", "NOPE"], "unknown competition"),
        (["--competition", "DENOISING_16000HZ", "--count", "0"], "must be >= 1"),
        (["--competition", "DENOISING_16000HZ", "--seed", "-3"], "must be >= 0"),
        (["--competition", "DENOISING_16000HZ", "--rir", "arni"], "--rir applies"),
        (["--competition", "DEREVERBERATION_48000HZ", "--noise", "wham"], "--noise applies"),
        (["--competition", "DENOISING_16000HZ", "--speech", "say"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["dataset", "generate", "--count", "1", "--seed", "1", "--out", str(tmp_path / "d")]
    with pytest.raises(SystemExit) as exc:
        main([*argv, *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_existing_out_and_missing_key_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["dataset", "generate", "--competition", "DENOISING_16000HZ", "--count", "1"]
    base += ["--seed", "1"]
    with pytest.raises(SystemExit) as exc:
        main([*base, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "already exists" in capsys.readouterr().err
    for name in ("ELEVENLABS_API_KEY", "ELEVENLABS_API_KEY_FILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    code = main([*base, "--out", str(tmp_path / "x"), "--speech", "elevenlabs"])
    assert code == 2
    assert "ELEVENLABS_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
