"""Localnet: two processes share one file; forged and replayed writes are refused; the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from soundsright_async.chain._localnet_db import LocalnetDB
from soundsright_async.chain.localnet import LocalnetChain, sign_write
from soundsright_async.chain.types import WriteStatus
from soundsright_async.cli import main
from soundsright_async.protocol import commitment_hash, commitment_payload
from soundsright_async.wallet import create_wallet, load_hotkey

REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"


@pytest.fixture
def net(tmp_path: Path) -> tuple[Path, Path]:
    wallets = tmp_path / "wallets"
    for hk in ("miner", "validator", "other"):
        create_wallet("w", hk, wallets)
    db = tmp_path / "chain.sqlite"
    assert main(["localnet", "init", "--path", str(db), "--netuid", "5", "--block-time", "1"]) == 0
    base = [
        "localnet",
        "register",
        "--path",
        str(db),
        "--wallet",
        "w",
        "--wallet-path",
        str(wallets),
    ]
    assert main([*base, "--hotkey", "validator", "--stake", "1500", "--validator"]) == 0
    assert main([*base, "--hotkey", "miner"]) == 0
    return db, wallets


MINER_SCRIPT = """
import asyncio, sys
from soundsright_async.chain.localnet import LocalnetChain
from soundsright_async.wallet import load_hotkey
async def go():
    key = load_hotkey("w", "miner", sys.argv[2])
    async with LocalnetChain(sys.argv[1], netuid=5, hotkey=key) as chain:
        res = await chain.commit(sys.argv[3].encode())
        print(res.status, res.block)
asyncio.run(go())
"""


def test_two_processes_share_one_file(net: tuple[Path, Path]) -> None:
    db, wallets = net
    miner_hotkey = load_hotkey("w", "miner", wallets).ss58_address
    digest = commitment_hash(
        namespace="ns", name="m", revision=REV, hotkey=miner_hotkey, competition=1
    )
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MINER_SCRIPT), str(db), str(wallets), digest],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out[0] == "ok"
    reader = textwrap.dedent("""
        import asyncio, sys
        from soundsright_async.chain.localnet import LocalnetChain
        from soundsright_async.wallet import load_hotkey
        async def go():
            key = load_hotkey("w", "validator", sys.argv[2])
            async with LocalnetChain(sys.argv[1], netuid=5, hotkey=key) as chain:
                c = (await chain.commitments())[sys.argv[3]]
                print(c.data, c.block, c.uid)
        asyncio.run(go())
    """)
    got = subprocess.run(
        [sys.executable, "-c", reader, str(db), str(wallets), miner_hotkey],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert got == [digest, out[1], "1"]


async def test_forged_and_replayed_writes_are_refused(net: tuple[Path, Path]) -> None:
    db_path, wallets = net
    db = LocalnetDB(db_path)
    miner = load_hotkey("w", "miner", wallets)
    other = load_hotkey("w", "other", wallets)
    chain_id = db.meta().chain_id
    body = commitment_payload("a" * 64)
    # "other" signs, but claims to be the miner: refused, nothing written
    forged = sign_write(other, chain_id=chain_id, netuid=5, kind="commit", body=body, nonce=1)
    from dataclasses import replace

    forged = replace(forged, hotkey=miner.ss58_address)
    res = db.submit(forged)
    assert res.status is WriteStatus.REJECTED
    assert "BadSignature" in res.reason
    # a signature for another body does not carry over
    good = sign_write(miner, chain_id=chain_id, netuid=5, kind="commit", body=body, nonce=5)
    assert not db.submit(replace(good, body=b"b" * 64)).ok
    assert db.submit(good).ok
    replay = db.submit(good)
    assert replay.status is WriteStatus.REJECTED
    assert "replayed" in replay.reason
    # a write signed for another localnet file is refused
    other_chain = sign_write(miner, chain_id="0" * 32, netuid=5, kind="commit", body=body, nonce=10)
    assert "BadSignature" in db.submit(other_chain).reason
    assert db.commitments(5)[miner.ss58_address].data == "a" * 64


async def test_concurrent_writers(net: tuple[Path, Path]) -> None:
    db_path, wallets = net
    miner = LocalnetChain(db_path, netuid=5, hotkey=load_hotkey("w", "miner", wallets))
    val = LocalnetChain(db_path, netuid=5, hotkey=load_hotkey("w", "validator", wallets))
    results = await asyncio.gather(
        *(miner.commit(f"{i:064x}".encode()) for i in range(20)),
        *(val.metagraph() for _ in range(20)),
    )
    assert all(r.ok for r in results[:20])  # type: ignore[union-attr]
    assert len((await val.metagraph()).neurons) == 2


def test_block_height_follows_the_clock(tmp_path: Path) -> None:
    now = [100.0]
    db = LocalnetDB(tmp_path / "c.sqlite", clock=lambda: now[0])
    db.init(netuid=1, block_time=0.5)
    assert db.head().number == 0
    now[0] += 10.0
    assert db.head().number == 20
    assert db.head().hash != LocalnetDB(tmp_path / "c.sqlite", clock=lambda: 105.0).head().hash


def test_cli_show_and_errors(
    net: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, wallets = net
    capsys.readouterr()
    assert main(["localnet", "show", "--path", str(db), "--json"]) == 0
    snap = orjson.loads(capsys.readouterr().out)
    (subnet,) = snap["subnets"]
    assert subnet["netuid"] == 5
    assert [n["validator_permit"] for n in subnet["neurons"]] == [
        True,
        False,
    ]
    assert snap["block_time"] == 1.0
    assert main(["localnet", "show", "--path", str(db)]) == 0
    assert "subnet 5: 2 neurons" in capsys.readouterr().out
    assert main(["localnet", "show", "--path", str(tmp_path / "missing.sqlite")]) == 2
    assert "no localnet file" in capsys.readouterr().err
    rc = main(
        [
            "localnet",
            "register",
            "--path",
            str(db),
            "--wallet",
            "w",
            "--hotkey",
            "nope",
            "--wallet-path",
            str(wallets),
        ]
    )
    assert rc == 2
    assert "no readable hotkey" in capsys.readouterr().err
    rc = main(
        [
            "localnet",
            "register",
            "--path",
            str(db),
            "--wallet",
            "w",
            "--hotkey",
            "other",
            "--wallet-path",
            str(wallets),
            "--netuid",
            "9",
        ]
    )
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
    # init again: idempotent
    assert main(["localnet", "init", "--path", str(db), "--netuid", "5"]) == 0
    assert "already exists" in capsys.readouterr().out
