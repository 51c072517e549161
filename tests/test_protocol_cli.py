from __future__ import annotations

import pytest

from soundsright_async.cli import main

REFERENCE = "41162dc080cdc8fd34d432f3914e2f74891d9b37d8b87718904a04ba58d8d415"


def test_commitment_command_prints_reference(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "commitment",
            "--namespace",
            "synapsecai",
            "--name",
            "my_speech_enhancement_model",
            "--revision",
            "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882",
            "--hotkey",
            "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM",
            "--competition",
            "DENOISING_16000HZ",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out == REFERENCE + "\n"


def test_commitment_command_rejects_bad_competition(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "commitment",
                "--namespace",
                "a",
                "--name",
                "b",
                "--revision",
                "c",
                "--hotkey",
                "h",
                "--competition",
                "NOPE",
            ]
        )
    assert exc.value.code == 2
    assert "unknown competition" in capsys.readouterr().err
