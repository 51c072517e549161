"""One suite, three adapters: fake (in memory), localnet (SQLite) and bittensor (fake substrate)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from bittensor.sp_core import Keypair
from test_chain_bittensor import NETUID, FakeSubstrate

from soundsright_async.chain import Chain, WriteStatus
from soundsright_async.chain._localnet_db import LocalnetDB
from soundsright_async.chain.fake import FakeNetwork
from soundsright_async.chain.localnet import LocalnetChain
from soundsright_async.chain.subtensor import SubtensorChain

VAL = Keypair.create_from_uri("//Validator")
MINER = Keypair.create_from_uri("//Miner")
STRANGER = Keypair.create_from_uri("//Stranger")
RATE_LIMIT = 100


@dataclass
class Backend:
    make: Callable[[Keypair], Chain]
    register: Callable[[str, float, bool], object]
    advance: Callable[[int], None]


def _fake(_: Path) -> Backend:
    net = FakeNetwork(netuid=NETUID, block=1000, weights_rate_limit=RATE_LIMIT)

    def advance(n: int) -> None:
        net.advance(n)

    return Backend(
        lambda k: net.chain(k.ss58_address),
        lambda hk, stake, v: net.register(hk, stake=stake, validator=v),
        advance,
    )


def _localnet(tmp: Path) -> Backend:
    now = [1_000_000.0]
    db = LocalnetDB(tmp / "ln.sqlite", clock=lambda: now[0])
    db.init(netuid=NETUID, block_time=12.0, weights_rate_limit=RATE_LIMIT)
    now[0] += 12.0 * 1000

    def advance(n: int) -> None:
        now[0] += 12.0 * n

    return Backend(
        lambda k: LocalnetChain(db.path, netuid=NETUID, hotkey=k, clock=lambda: now[0]),
        lambda hk, stake, v: db.register(NETUID, hk, hk, stake=stake, validator=v),
        advance,
    )


def _bittensor(_: Path) -> Backend:
    sub = FakeSubstrate(netuid=NETUID, block=1000)
    sub.make_subnet()
    sub.storage[("SubtensorModule", "WeightsSetRateLimit", (NETUID,))] = RATE_LIMIT

    def advance(n: int) -> None:
        sub.block += n

    return Backend(
        lambda k: SubtensorChain(network="ws://fake:1", netuid=NETUID, hotkey=k, substrate=sub),
        lambda hk, stake, v: sub.register(hk, stake=stake, validator=v),
        advance,
    )


@pytest.fixture(params=[_fake, _localnet, _bittensor], ids=["fake", "localnet", "bittensor"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "tokens.json"))
    b: Backend = request.param(tmp_path)
    b.register(VAL.ss58_address, 2000.0, True)
    b.register(MINER.ss58_address, 0.0, False)
    return b


async def test_block_and_metagraph(backend: Backend) -> None:
    async with backend.make(VAL) as chain:
        first = await chain.block()
        assert first.number >= 1000
        assert first.hash.startswith("0x")
        assert await chain.block_time() == 12.0
        backend.advance(3)
        head = await chain.block()
        assert head.number == first.number + 3
        assert await chain.block_hash(first.number) == first.hash
        assert await chain.block_hash(head.number) == head.hash
        assert await chain.block_hash(first.number + 1) not in (first.hash, head.hash)
        mg = await chain.metagraph()
    assert mg.netuid == NETUID
    assert len(mg) == 2
    v, m = mg.neurons
    assert (v.uid, v.hotkey, v.validator_permit, v.stake_alpha) == (0, VAL.ss58_address, True, 2000)
    assert (m.uid, m.hotkey, m.validator_permit, m.stake_alpha) == (1, MINER.ss58_address, False, 0)
    assert mg.by_hotkey(STRANGER.ss58_address) is None


async def test_commitments_carry_their_block(backend: Backend) -> None:
    async with backend.make(MINER) as miner, backend.make(VAL) as validator:
        at = (await miner.block()).number
        res = await miner.commit(b"f" * 64)
        assert res.ok
        assert res.block == at
        backend.advance(5)
        cs = await validator.commitments()
        assert cs[MINER.ss58_address].data == "f" * 64
        assert cs[MINER.ss58_address].block == at
        assert cs[MINER.ss58_address].uid == 1
        assert (await miner.commit(b"e" * 64)).ok
        cs = await validator.commitments()
        assert cs[MINER.ss58_address].block == at + 5
    async with backend.make(STRANGER) as stranger:
        res = await stranger.commit(b"x" * 64)
        assert res.status is WriteStatus.REJECTED
        assert res.reason
        assert STRANGER.ss58_address not in await stranger.commitments()


async def test_serve_publishes_endpoint(backend: Backend) -> None:
    async with backend.make(MINER) as miner:
        assert (await miner.serve("127.0.0.1", 8091)).ok
        assert (await miner.metagraph()).neurons[1].endpoint == "127.0.0.1:8091"
        assert not (await miner.serve("0.0.0.0", 8091)).ok
    async with backend.make(STRANGER) as stranger:
        assert (await stranger.serve("127.0.0.1", 1)).status is WriteStatus.REJECTED


async def test_weights_results(backend: Backend) -> None:
    async with backend.make(VAL) as validator:
        assert (await validator.set_weights({0: 0.5, 1: 1.0})).ok
        again = await validator.set_weights({1: 1.0})
        assert again.status is WriteStatus.RATE_LIMITED
        assert again.reason
        backend.advance(RATE_LIMIT)
        assert (await validator.set_weights({1: 1.0})).ok
        backend.advance(RATE_LIMIT)
        assert (await validator.set_weights({0: 0.0, 1: 0.0})).status is WriteStatus.REJECTED
        assert (await validator.set_weights({0: -1.0})).status is WriteStatus.REJECTED
    async with backend.make(MINER) as miner:
        res = await miner.set_weights({0: 1.0})
        assert res.status is WriteStatus.REJECTED
        assert "Permit" in res.reason
