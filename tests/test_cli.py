from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from soundsright_async.audio.testsignals import write_scoring_fixture
from soundsright_async.cli import main
from soundsright_async.competitions import get_competition
from soundsright_async.miner.__main__ import main as miner_main
from soundsright_async.validator.__main__ import main as validator_main

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def d16(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    fx = write_scoring_fixture(
        tmp_path_factory.mktemp("d16"),
        get_competition("DENOISING_16000HZ"),
        files=3,
        seconds=2.0,
        seed=21,
    )
    (fx.enhanced / "1.wav").unlink()
    return fx


def test_score_json(d16, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    code = main(
        ["score", "--competition", "DENOISING_16000HZ", "--clean", str(d16.clean),
         "--enhanced", str(d16.enhanced), "--json", "--workers", "2"]
    )  # fmt: skip
    assert code == 0
    out = orjson.loads(capsys.readouterr().out)
    assert (out["competition"], out["sample_rate"], out["files"]) == ("DENOISING_16000HZ", 16000, 3)
    assert list(out["metrics"]) == ["PESQ", "ESTOI"]
    pesq = out["metrics"]["PESQ"]
    assert set(pesq) == {"average", "confidence_interval", "scores", "failed"}
    assert list(pesq["scores"]) == ["0.wav", "1.wav", "2.wav"]
    assert pesq["scores"]["1.wav"] == -0.5
    assert pesq["failed"] == {"1.wav": "missing"}
    assert out["metrics"]["ESTOI"]["scores"]["1.wav"] == -1.0
    assert pesq["average"] == pytest.approx(sum(pesq["scores"].values()) / 3, abs=1e-12)
    lo, hi = pesq["confidence_interval"]
    assert lo < pesq["average"] < hi


def test_score_table(d16, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    code = main(
        ["score", "--competition", "DENOISING_16000HZ", "--clean", str(d16.clean),
         "--enhanced", str(d16.enhanced)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "DENOISING_16000HZ (16000 Hz, 3 files)" in out
    assert "PESQ" in out
    assert "ESTOI" in out
    assert "1.wav: missing (scored the floor for PESQ, ESTOI)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--competition", "NOPE"], "unknown competition 'NOPE'"),
        (["--competition", "DENOISING_48000HZ"], "--noisy is required for DENOISING_48000HZ"),
        (["--competition", "DENOISING_16000HZ", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_score_bad_arguments_exit_2(
    d16,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["score", "--clean", str(d16.clean), "--enhanced", str(d16.enhanced), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_score_missing_directory_and_no_clean_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["score", "--competition", "DENOISING_16000HZ", "--clean", str(tmp_path / "x"),
              "--enhanced", str(tmp_path)])  # fmt: skip
    assert info.value.code == 2
    assert f"{tmp_path / 'x'}: no such directory" in capsys.readouterr().err
    code = main(["score", "--competition", "DENOISING_16000HZ", "--clean", str(tmp_path),
                 "--enhanced", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == (
        f"soundsright: error: no *.wav files in clean directory {tmp_path}\n"
    )


def test_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("ELEVENLABS_API_KEY", "HF_TOKEN", "HF_TOKEN_FILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    good = ROOT / "config/validator.toml"
    assert main(["config", "check", "--role", "validator", "--config", str(good), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["settings"]["secrets"] == {"ELEVENLABS_API_KEY": "not set", "HF_TOKEN": "not set"}
    bad = tmp_path / "bad.toml"
    bad.write_text("[wallet]\nname = 3\n")
    assert main(["config", "check", "--role", "miner", "--config", str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"soundsright: error: {bad}: wallet.name: Input should be a valid string (got 3)\n"
        f"soundsright: error: {bad}: model: missing required key\n"
    )


def test_daemon_entry_points_check_their_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no wallet under ~/.bittensor
    # both are real daemons: the shipped configs name a wallet this machine does not have
    assert validator_main(["--config", str(ROOT / "config/validator.toml"), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"soundsright-validator: error: {ROOT / 'config/validator.toml'}: wallet:"
    )
    assert err.count("\n") == 1
    # the shipped miner config deliberately lacks the public address
    assert miner_main(["--config", str(ROOT / "config/miner.toml"), "--check"]) == 2
    assert "server.external_ip: required" in capsys.readouterr().err
    bad = tmp_path / "v.toml"
    bad.write_text("[dataset]\nspeech = 'elevenlabs'\n")
    assert validator_main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"soundsright-validator: error: {bad}: dataset.speech: ")
    assert err.count("\n") == 1


def test_console_scripts_are_installed(d16) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [str(BIN / "soundsright"), "score", "--competition", "denoising_16000hz",
         "--clean", str(d16.clean), "--enhanced", str(d16.clean), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert out["metrics"]["ESTOI"]["average"] == pytest.approx(1.0, abs=1e-9)
    assert out["metrics"]["PESQ"]["failed"] == {}
    for script in ("soundsright-validator", "soundsright-miner"):
        proc = subprocess.run(
            [str(BIN / script), "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0
        assert "--config" in proc.stdout


@pytest.mark.parametrize("which", ["clean", "noisy"])
def test_score_unreadable_reference_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    fx = write_scoring_fixture(
        tmp_path, get_competition("DENOISING_48000HZ"), files=2, seconds=0.5, seed=3
    )
    bad = getattr(fx, which) / "1.wav"
    bad.write_bytes(b"garbage")
    dirs = ["--clean", str(fx.clean), "--enhanced", str(fx.enhanced), "--noisy", str(fx.noisy)]
    code = main(["score", "--competition", "DENOISING_48000HZ", *dirs, "--workers", "1"])
    assert code == 2
    what = "clean" if which == "clean" else "degraded"
    assert capsys.readouterr().err == (
        f"soundsright: error: {what} file {bad} unreadable: Error opening '{bad}': "
        "Format not recognised.\n"
    )
