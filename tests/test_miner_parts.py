"""Miner pieces on their own: back-off, sd_notify, the feedback store, config errors, the CLI."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import anyio
import orjson
import pytest

from soundsright_async.cli import main as cli_main
from soundsright_async.miner.__main__ import main as miner_main
from soundsright_async.miner._metrics import prometheus_text
from soundsright_async.miner._state import MinerState
from soundsright_async.miner.feedback import (
    FeedbackRecord,
    FeedbackStore,
    read_records,
    summarize,
)
from soundsright_async.protocol import FeedbackRequest, MetricStats, MinerResult, Winner
from soundsright_async.runtime import Backoff, SdNotifier, TaskStatus, supervise
from soundsright_async.wallet import create_wallet

REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
REV2 = "0123456789abcdef0123456789abcdef01234567"


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.failures == 5
    b.reset()
    assert b.next() == 0.5
    with pytest.raises(ValueError, match="initial > 0"):
        Backoff(0, 1)


async def test_supervise_restarts_after_ready_but_not_before() -> None:
    runs: list[int] = []
    crashed: list[str] = []
    third = asyncio.Event()

    async def flaky(status: TaskStatus) -> None:
        runs.append(len(runs))
        status.started("ready")
        if len(runs) < 3:
            raise RuntimeError("boom")
        third.set()
        await asyncio.Event().wait()

    async def broken(status: TaskStatus) -> None:
        raise OSError("address already in use")

    async def daemon() -> None:
        async with anyio.create_task_group() as tg:
            value = await tg.start(
                lambda task_status: supervise(
                    "flaky",
                    flaky,
                    backoff=Backoff(0.01, 0.02),
                    on_crash=crashed.append,
                    task_status=task_status,
                ),
                name="flaky",
            )
            assert value == "ready"
            await third.wait()
            assert crashed == ["flaky", "flaky"]
            await tg.start(
                lambda task_status: supervise(
                    "broken", broken, backoff=Backoff(1, 1), task_status=task_status
                ),
                name="b",
            )

    with pytest.raises(ExceptionGroup) as info:
        await daemon()
    assert any(isinstance(e, OSError) for e in info.value.exceptions)


def test_sd_notify_datagrams(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        n = SdNotifier.from_env({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000"})
        assert n.watchdog_interval_s == 1.5
        assert n.ready("serving")
        assert sock.recv(100) == b"READY=1\nSTATUS=serving"
        assert n.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
        assert n.stopping()
        assert sock.recv(100) == b"STOPPING=1\nSTATUS=stopping"
        n.close()
    finally:
        sock.close()
    other_pid = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    assert SdNotifier.from_env(other_pid, pid=os.getpid() or 2).watchdog_interval_s is None
    off = SdNotifier.from_env({})
    assert not off.enabled
    assert not off.ready("x")
    assert off.watchdog_interval_s is None
    gone = SdNotifier(str(tmp_path / "missing.sock"))
    assert gone.ready("x") is False  # logged once, never raised


def _request(
    epoch: int, pesq: float, *, winner: str = "5Gw", valid: bool = True
) -> FeedbackRequest:
    return FeedbackRequest(
        competition="DENOISING_16000HZ",
        epoch=epoch,
        seed=1,
        result=MinerResult(
            hotkey="5Me",
            hf_model_namespace="ns",
            hf_model_name="m",
            hf_model_revision=REV,
            valid=valid,
            reason=None if valid else "build failed",
            metrics={"ESTOI": MetricStats(mean=0.5), "PESQ": MetricStats(mean=pesq)},
        ),
        winners={
            "PESQ": Winner(
                hotkey=winner,
                hf_model_namespace="w",
                hf_model_name="x",
                hf_model_revision=REV2,
                score=3.0,
            )
        },
    )


def test_store_appends_rotates_and_summarises(tmp_path: Path) -> None:
    one = FeedbackRecord(1000.0, "5V1", 1, _request(1, 2.0)).to_json() + b"\n"
    store = FeedbackStore(tmp_path, max_file_bytes=len(one) * 2, keep_files=2)
    for i in range(7):
        store.append_sync(
            FeedbackRecord(1000.0 + i, f"5V{i % 2}", i, _request(i, 2.0 + i / 10)).to_json() + b"\n"
        )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["feedback.jsonl", "feedback.jsonl.1", "feedback.jsonl.2"]
    assert all(p.stat().st_size <= len(one) * 2 for p in tmp_path.iterdir())
    with (tmp_path / "feedback.jsonl").open("ab") as f:
        f.write(b'{"received_ts": 5, "valid')  # a torn last line after a crash
    records, skipped, files = read_records(tmp_path)
    assert [r.feedback.epoch for r in records] == [2, 3, 4, 5, 6]  # oldest 2 rotated away
    assert skipped == 1
    assert [f.name for f in files] == ["feedback.jsonl.2", "feedback.jsonl.1", "feedback.jsonl"]
    summary = summarize(records)
    d16 = summary["competitions"]["DENOISING_16000HZ"]
    assert d16["epoch"] == 6
    assert d16["validators"] == ["5V0"]
    assert list(d16["metrics"]) == ["PESQ", "ESTOI"]  # the competition's metric order
    pesq = d16["metrics"]["PESQ"]
    assert pesq["ours"] == pytest.approx(2.6)
    assert pesq["gap"] == pytest.approx(-0.4)
    assert pesq["winner_model"] == "w/x@0123456789ab"
    assert d16["metrics"]["ESTOI"]["winner"] is None


async def test_store_async_append_and_no_keep(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "new", max_file_bytes=4096, keep_files=0)
    big = FeedbackRecord(1.0, "5V", None, _request(1, 1.0))
    for _ in range(6):
        await store.append(big)
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["feedback.jsonl"]


def test_metrics_text_escapes_labels() -> None:
    state = MinerState(
        hotkey="5Me", competition="DENOISING_16000HZ", namespace='n"s', name="m",
        revision=REV, commitment_wanted="0" * 64, clock=lambda: 100.0,
    )  # fmt: skip
    state.count("requests_total", path="/v3/model", status="200")
    state.count("requests_total", path="/v3/model", status="200")
    text = prometheus_text(state)
    assert 'model="n\\"s/m"' in text
    assert 'soundsright_miner_requests_total{path="/v3/model",status="200"} 2' in text
    assert "soundsright_miner_start_time_seconds 100" in text
    assert "soundsright_miner_registered" not in text  # unknown until the first sync


MODEL = f"""
[model]
competition = "DENOISING_16000HZ"
namespace = "ns"
name = "m"
revision = "{REV}"
"""


@pytest.fixture
def wallet(tmp_path: Path) -> Path:
    create_wallet("w", "h", tmp_path / "wallets")
    return tmp_path / "wallets"


def _config(tmp_path: Path, wallet: Path, body: str, server: str = "host = '127.0.0.1'") -> Path:
    p = tmp_path / "miner.toml"
    p.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[wallet]\nname = "w"\nhotkey = "h"\n'
        f'path = "{wallet}"\n[server]\n{server}\n{body}'
    )
    return p


@pytest.mark.parametrize(
    ("body", "server", "message"),
    [
        (MODEL.replace("[model]", "[[model]]") * 2, None, "model: 2 [[model]] entries: a miner"),
        (
            MODEL.replace('"DENOISING_16000HZ"', '["DENOISING_16000HZ", "DENOISING_48000HZ"]'),
            None,
            "model: competition lists 2 competitions",
        ),
        (MODEL.replace(REV, "main"), None, "model.revision: must be a 40-character lowercase"),
        (MODEL.replace("DENOISING_16000HZ", "SINGING"), None, "model.competition: unknown"),
        (MODEL.replace('hotkey = "h"', ""), None, "wallet: wallet w/h in"),
        (MODEL, "host = '0.0.0.0'", "server.external_ip: required when server.host is 0.0.0.0"),
        (MODEL, "external_ip = '0.0.0.0'", "server.external_ip: must be a routable address"),
        (MODEL, "host = 'example.com'", "server.host: must be an IPv4 or IPv6 address"),
    ],
)
def test_config_errors_are_one_line_exit_2(
    tmp_path: Path,
    wallet: Path,
    capsys: pytest.CaptureFixture[str],
    body: str,
    server: str | None,
    message: str,
) -> None:
    path = _config(tmp_path, wallet, body, server or "host = '127.0.0.1'")
    if "wallet w/h" in message:  # a hotkey name with no key file
        path.write_text(path.read_text().replace('hotkey = "h"', 'hotkey = "nope"'))
        message = "wallet: wallet w/nope in"
    assert miner_main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"soundsright-miner: error: {path}: ")
    assert message in err
    assert err.count("\n") == 1


def test_check_prints_the_summary(
    tmp_path: Path, wallet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soundsright_async.chain._localnet_db import LocalnetDB
    from soundsright_async.wallet import load_hotkey

    db = LocalnetDB(tmp_path / "ln.sqlite")
    db.init(netuid=7)
    me = load_hotkey("w", "h", wallet)
    db.register(7, me.ss58_address, me.ss58_address)
    port = _free_port()
    chain = f'[chain]\nnetwork = "localnet"\nlocalnet_path = "{db.path}"\n'
    server = f"host = '0.0.0.0'\nexternal_ip = '127.0.0.1'\nport = {port}"
    path = _config(tmp_path, wallet, MODEL + chain, server)
    path.write_text("netuid = 7\n" + path.read_text())
    assert miner_main(["--config", str(path), "--check", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["endpoint"] == f"127.0.0.1:{port}"
    assert len(out["commitment"]) == 64
    assert out["settings"]["upkeep"]["metagraph_interval_s"] == 120.0
    assert out["ok"] is True
    assert out["checks"] == {
        "subnet": {"ok": True, "message": "subnet 7 on localnet: 1 neurons"},
        "registered": {
            "ok": True,
            "message": "hotkey registered as uid 0; endpoint on chain: none",
        },
        "endpoint": {"ok": True, "message": f"endpoint 127.0.0.1:{port} is reachable"},
    }
    assert (tmp_path / "data").is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_fails_for_a_missing_subnet_an_unregistered_hotkey_and_a_dead_endpoint(
    tmp_path: Path, wallet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soundsright_async.chain._localnet_db import LocalnetDB

    db = LocalnetDB(tmp_path / "ln.sqlite")
    db.init(netuid=1)
    prog = "soundsright-miner"

    def check(netuid: int, server: str) -> list[str]:
        chain = f'[chain]\nnetwork = "localnet"\nlocalnet_path = "{db.path}"\n'
        path = _config(tmp_path, wallet, MODEL + chain, server)
        path.write_text(f"netuid = {netuid}\n" + path.read_text())
        assert miner_main(["--config", str(path), "--check"]) == 1
        return [x for x in capsys.readouterr().out.splitlines() if ": ok:" in x or "FAILED" in x]

    assert check(105, "host = '127.0.0.1'") == [
        f"{prog}: FAILED: subnet 105 does not exist on localnet (check netuid in the config)"
    ]
    hotkey = load_hotkey_from_wallet(wallet)
    port = _free_port()  # published as 127.0.0.2:port, where nothing listens
    lines = check(1, f"host = '127.0.0.1'\nport = {port}\nexternal_ip = '127.0.0.2'")
    assert lines == [
        f"{prog}: ok: subnet 1 on localnet: 0 neurons",
        f"{prog}: FAILED: hotkey {hotkey} is not registered on subnet 1 (register it first; the "
        "daemon would wait for it)",
        f"{prog}: FAILED: endpoint 127.0.0.2:{port} is not reachable from this machine "
        "(Connection refused within 3s): check the firewall, NAT, server.external_ip and "
        "server.external_port",
    ]


def load_hotkey_from_wallet(wallet: Path) -> str:
    from soundsright_async.wallet import load_hotkey

    return load_hotkey("w", "h", wallet).ss58_address


def test_port_in_use_fails_start_up_with_exit_1(
    tmp_path: Path, wallet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soundsright_async.chain._localnet_db import LocalnetDB

    db = LocalnetDB(tmp_path / "ln.sqlite")
    db.init(netuid=105)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = f"host = '127.0.0.1'\nport = {port}"
        chain = f'[chain]\nnetwork = "localnet"\nlocalnet_path = "{db.path}"\n'
        path = _config(tmp_path, wallet, chain + "[logging]\nformat = 'json'\n" + MODEL, server)
        assert miner_main(["--config", str(path)]) == 1
    assert "soundsright-miner: failed: " in capsys.readouterr().err


def test_feedback_show_without_feedback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["feedback", "show", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no feedback yet in {tmp_path}\n"
    assert cli_main(["feedback", "show", "--data-dir", str(tmp_path / "x")]) == 2
    assert "no such directory" in capsys.readouterr().err
