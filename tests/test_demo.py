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
from containers.podman import engine_url

from soundsright_async.chain._localnet_db import LocalnetDB
from soundsright_async.chain._values import normalize_weights
from soundsright_async.demo._board import Board, MinerRow, WinnerRow, format_board
from soundsright_async.demo._progress import progress_line
from soundsright_async.demo._roster import Entry, examples_dir, roster
from soundsright_async.wallet import load_hotkey

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
    assert (
        key == "0 | datasets 1/1 | models 2: built 1, run 1, scored 1 | now miner2-gate (benchmark)"
    )
    assert progress_line({"head_block": None, "epoch": None}, names) == (
        "validator starting",
        "starting",
    )
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
        "  DENOISING_16000HZ        PESQ   miner1-dfn       uid   1  average 2.500"
        "  95% CI [2.250, 2.750]  unprocessed 1.500",
        "",
        "miners (points from the judgement, weight read back from the chain):",
        "  miner1-dfn       uid   1  deepfilternet  DENOISING_16000HZ        points 7.8000"
        "  weight 0.7500",
        "  miner2-gate      uid   2  spectral-gate  DENOISING_16000HZ        points 2.6000"
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


def test_unreachable_engine_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    sock = tmp_path / "no.sock"
    proc = subprocess.run(
        _demo_cmd(tmp_path / "demo"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, DOCKER_HOST=f"unix://{sock}"),
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        f"soundsright: failed: cannot reach the container engine at unix://{sock}: "
    )
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert _processes_under(tmp_path) == []
    assert not (tmp_path / "demo" / "net").exists()


# --------------------------------------------------------------------------- end to end

WINNER = re.compile(
    r"^  (\S+)\s+(\S+)\s+(\S+)\s+uid\s+(\d+)\s+average (\S+)\s+95% CI (.+?)\s+unprocessed (\S+)$"
)
MINER = re.compile(r"^  (\S+)\s+uid\s+(\d+)\s+(\S+)\s+(\S+)\s+points (\S+)\s+weight (\S+)$")


def _demo_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "soundsright_async.cli", "demo", "--dir", str(root), *args]


def _env() -> dict[str, str]:
    return dict(os.environ, DOCKER_HOST=engine_url(), PYTHONPATH=str(ROOT))


def _rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _processes_under(root: Path) -> list[str]:
    """Command lines of live processes that name ``root`` (every daemon's --config is there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(root) in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def _owned(owner: str) -> dict[str, list[str]]:
    env = dict(os.environ, CONTAINERS_CONF=f"/tmp/soundsright-podman-{os.getuid()}/containers.conf")
    out = {}
    for kind in ("container", "network", "image"):
        cmd = ["podman", kind, "ls", "-q", "--filter", f"label=soundsright.owner={owner}"]
        if kind == "container":
            cmd.insert(3, "-a")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[kind] = proc.stdout.split()
    return out


def _assert_nothing_left(root: Path, pid: int) -> None:
    assert _processes_under(root) == []
    assert _owned(f"demo-{pid}") == {"container": [], "network": [], "image": []}


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_demo_end_to_end_prints_the_judged_leaderboard(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    proc = await asyncio.create_subprocess_exec(
        *_demo_cmd(
            root,
            "--miners",
            "2",
            "--competitions",
            COMP,
            "--epoch-blocks",
            "120",
            "--dataset-size",
            "2",
        ),
        cwd=ROOT,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 800)
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
    _assert_nothing_left(root, proc.pid)

    # The printed progress went through the epoch, then the leaderboard.
    assert "validator started" in out
    assert re.search(r"epoch 0: block \d+, \d+ blocks left \| datasets 1/1 \| models 2", out)
    assert "Leaderboard, epoch 0" in out
    board = out[out.index("Leaderboard, epoch 0") :]
    winners = [m.groups() for line in board.splitlines() if (m := WINNER.match(line))]
    miners = [m.groups() for line in board.splitlines() if (m := MINER.match(line))]

    # Against the validator's store.
    store = root / "net" / "validators" / "validator" / "validator.sqlite"
    (judged,) = _rows(store, "SELECT output FROM judgements WHERE epoch = 0")
    output = json.loads(judged["output"])
    chain = LocalnetDB(root / "net" / "localnet.sqlite")
    graph = chain.metagraph(7)
    uid_of = {n.hotkey: n.uid for n in graph.neurons}
    metrics = {
        r["hotkey"]: json.loads(r["metrics"])["metrics"]
        for r in _rows(store, "SELECT hotkey, metrics FROM results WHERE epoch = 0 AND passed = 1")
    }
    (unprocessed,) = _rows(store, "SELECT metrics FROM unprocessed WHERE epoch = 0")
    base = json.loads(unprocessed["metrics"])["metrics"]
    expected_winners = set()
    for metric, w in output["winners"][COMP].items():
        ci = metrics[w["hotkey"]][metric]["confidence_interval"]
        expected_winners.add(
            (
                COMP,
                metric,
                uid_of[w["hotkey"]],
                f"{w['average']:.3f}",
                f"[{ci[0]:.3f}, {ci[1]:.3f}]",
                f"{base[metric]['average']:.3f}",
            )
        )
    printed_winners = {(c, m, int(u), a, ci, b) for c, m, _, u, a, ci, b in winners}
    assert printed_winners == expected_winners
    # A real denoiser beats the unprocessed input: both 16 kHz metrics have a winner.
    assert {m for _, m, *_ in printed_winners} == {"PESQ", "ESTOI"}
    wallets = root / "net" / "wallets"
    for _, _, name, uid, *_ in winners:
        assert uid_of[load_hotkey(name, "default", wallets).ss58_address] == int(uid)

    # Points from the judgement, weights as on the chain (and the chain has the judged weights).
    validator = graph.by_hotkey(
        load_hotkey("validator", "default", root / "net" / "wallets").ss58_address
    )
    assert validator is not None
    on_chain = chain.weights(7)[validator.uid]
    judged_weights = {u: w for u, w in enumerate(output["weights"]) if w > 0}
    assert on_chain == normalize_weights(judged_weights)
    total = sum(on_chain.values())
    assert sorted(name for name, *_ in miners) == ["miner1-dfn", "miner2-gate"]
    for name, uid, model, comp, points, weight in miners:
        hotkey = load_hotkey(name, "default", root / "net" / "wallets").ss58_address
        assert uid_of[hotkey] == int(uid)
        assert comp == COMP
        assert model == {"miner1-dfn": "deepfilternet", "miner2-gate": "spectral-gate"}[name]
        assert points == f"{output['scores'][int(uid)]:.4f}"
        assert weight == f"{on_chain.get(int(uid), 0) / total:.4f}"


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sigint_mid_benchmark_stops_everything(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    proc = await asyncio.create_subprocess_exec(
        *_demo_cmd(root, "--miners", "1", "--competitions", COMP, "--epoch-blocks", "100"),
        cwd=ROOT,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(proc.stdout.readline(), 400)).decode()
        assert line, "the demo ended before a benchmark ran:\n" + "".join(seen)
        seen.append(line)
        if "(benchmark)" in line:
            break
    await asyncio.sleep(5)  # its container is being built or running
    proc.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(proc.communicate(), 200)
    assert proc.returncode == 130, rest.decode() + err.decode()
    assert err.decode().endswith("soundsright: demo interrupted by SIGINT\n")
    assert "stopping 2 processes" in rest.decode()
    _assert_nothing_left(root, proc.pid)
