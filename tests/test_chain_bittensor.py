"""The bittensor v11 adapter, offline: a fake ``bt.Substrate`` (owned here) passed as substrate=.

``FakeSubstrate`` is a tiny chain: registration fills the metagraph runtime result and the
``Uids`` map, and submitted calls update storage the way the pallets would, so the contract suite
(test_chain_contract.py) can run against the adapter too.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest
from bittensor.sp_core import Keypair

from soundsright_async.chain import ChainError, ChainUnavailableError, SubnetNotFoundError
from soundsright_async.chain.subtensor import SubtensorChain
from soundsright_async.chain.types import WriteStatus

NETUID = 7
RAO = 10**9


class FakeSubstrate:
    def __init__(self, *, netuid: int = NETUID, block: int = 1000) -> None:
        self.token_symbols: dict[int, str] = {}
        self.netuid = netuid
        self.block = block
        self.storage: dict[tuple[str, str, tuple[Any, ...]], Any] = {}
        self.maps: dict[tuple[str, str, tuple[Any, ...]], dict[Any, Any]] = {}
        self.graph: dict[str, Any] | None = None
        self.submitted: list[tuple[Any, str]] = []
        self.results: deque[bt.ExtrinsicResult | Exception] = deque()
        self.failures: deque[Exception] = deque()
        self.connects = 0
        self.closes = 0
        self.weights: dict[int, dict[int, int]] = {}

    # --- test set-up -----------------------------------------------------------------------

    def make_subnet(self) -> None:
        me = Keypair.create_from_uri("//Owner").ss58_address
        self.graph = {
            "block": self.block,
            "tempo": 360,
            "last_step": 0,
            "blocks_since_last_step": 1,
            "owner_hotkey": me,
            "owner_coldkey": me,
            "network_registered_at": 1,
            "netuid": self.netuid,
            "name": "soundsright",
            "symbol": "x",
            "hotkeys": [],
            "coldkeys": [],
            "validator_permit": [],
            "alpha_stake": [],
            "tao_stake": [],
            "total_stake": [],
            "axons": [],
        }
        self.storage[("SubtensorModule", "WeightsSetRateLimit", (self.netuid,))] = 100
        self.storage[("SubtensorModule", "LastUpdate", (self.netuid,))] = []

    def register(self, hotkey: str, *, stake: float = 0.0, validator: bool = False) -> int:
        assert self.graph is not None
        g = self.graph
        if hotkey in g["hotkeys"]:
            uid = g["hotkeys"].index(hotkey)
        else:
            uid = len(g["hotkeys"])
            for key, value in (
                ("hotkeys", hotkey),
                ("coldkeys", hotkey),
                ("validator_permit", False),
                ("alpha_stake", 0),
                ("tao_stake", 0),
                ("total_stake", 0),
                ("axons", {"ip": 0, "port": 0, "ip_type": 4}),
            ):
                g[key].append(value)
            self.storage[("SubtensorModule", "LastUpdate", (self.netuid,))].append(0)
            self.maps.setdefault(("SubtensorModule", "Uids", (self.netuid,)), {})[hotkey] = uid
            self.storage[("SubtensorModule", "Uids", (self.netuid, hotkey))] = uid
        g["validator_permit"][uid] = validator
        g["alpha_stake"][uid] = g["total_stake"][uid] = int(stake * RAO)
        g["tao_stake"][uid] = int(stake * RAO)
        return uid

    # --- bt.Substrate ----------------------------------------------------------------------

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.popleft()

    def balance(self, rao: int, netuid: int = 0) -> bt.Balance:
        return bt.Balance.from_rao(int(rao), netuid) if netuid else bt.Balance.from_rao(int(rao))

    async def connect(self) -> None:
        self.connects += 1

    async def close(self) -> None:
        self.closes += 1

    async def block_hash(self, block: int | None = None) -> str:
        self._maybe_fail()
        return f"0x{(self.block if block is None else block):064x}"

    async def block_number(self) -> int:
        self._maybe_fail()
        return self.block

    async def finalized_block_number(self) -> int:
        return self.block

    async def block_time(self) -> float:
        return 12.0

    async def query(
        self, module: str, fn: str, params: list[Any] | None = None, block_hash: str | None = None
    ) -> Any:
        self._maybe_fail()
        return self.storage.get((module, fn, tuple(params or ())))

    async def query_map(
        self, module: str, fn: str, params: list[Any] | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        self._maybe_fail()
        return list(self.maps.get((module, fn, tuple(params or ())), {}).items())

    async def query_batch(
        self, module: str, fn: str, param_sets: list[list[Any]], block_hash: str | None = None
    ) -> list[Any]:
        return [await self.query(module, fn, p, block_hash) for p in param_sets]

    async def runtime_call(
        self, api: str, method: str, params: list[Any], block_hash: str | None = None
    ) -> Any:
        self._maybe_fail()
        if (api, method) == ("SubnetInfoRuntimeApi", "get_metagraph") and self.graph:
            return {**self.graph, "block": self.block}
        return None

    async def constant(self, module: str, name: str) -> Any:
        return None

    async def compose(self, call: Any) -> Any:
        return call

    async def estimate_fee(self, call: Any, keypair: Any) -> bt.Balance:
        return bt.Balance.from_rao(1000)

    async def events(self, block_hash: str | None = None) -> list[dict[str, Any]]:
        return []

    async def submit(
        self,
        call: Any,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = None,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> bt.ExtrinsicResult:
        self._maybe_fail()
        signer = str(keypair.ss58_address)
        self.submitted.append((call, signer))
        if self.results:
            r = self.results.popleft()
            if isinstance(r, Exception):
                raise r
            return r
        return self._apply(call, signer)

    def _fail(self, name: str, code: bt.ErrorCode) -> bt.ExtrinsicResult:
        err = bt.ChainError(f"{name} (fake chain)", name=name, code=code)
        return bt.ExtrinsicResult(success=False, message=name, error=err)

    def _apply(self, call: Any, signer: str) -> bt.ExtrinsicResult:
        assert self.graph is not None
        g, p = self.graph, call.params
        uid = g["hotkeys"].index(signer) if signer in g["hotkeys"] else None
        fn = call.function
        if fn == "set_commitment":
            if uid is None:
                return self._fail("AccountNotAllowedCommit", bt.ErrorCode.NOT_AUTHORIZED)
            fields = [{k: "0x" + bytes(v).hex() for k, v in f.items()} for f in p["info"]["fields"]]
            record = {"block": self.block, "deposit": 0, "info": {"fields": fields}}
            self.maps.setdefault(("Commitments", "CommitmentOf", (self.netuid,)), {})[signer] = (
                record
            )
        elif fn == "serve_axon":
            if uid is None:
                return self._fail("HotKeyNotRegisteredInSubNet", bt.ErrorCode.NOT_REGISTERED)
            g["axons"][uid] = {"ip": p["ip"], "port": p["port"], "ip_type": p["ip_type"]}
        elif fn in ("set_mechanism_weights", "commit_timelocked_mechanism_weights"):
            assert uid is not None  # the SDK preflight refuses unregistered hotkeys
            if not g["validator_permit"][uid]:
                return self._fail("NeuronNoValidatorPermit", bt.ErrorCode.NOT_AUTHORIZED)
            if "dests" in p:
                if max(p["dests"]) >= len(g["hotkeys"]):
                    return self._fail("UidVecContainInvalidOne", bt.ErrorCode.INVALID_ARGUMENT)
                self.weights[uid] = dict(zip(p["dests"], p["weights"], strict=True))
            self.storage[("SubtensorModule", "LastUpdate", (self.netuid,))][uid] = self.block
        return bt.ExtrinsicResult(
            success=True,
            message="ok",
            block_hash=f"0x{self.block:064x}",
            extrinsic_id=f"{self.block}-1",
        )


@pytest.fixture(autouse=True)
def _token_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "tokens.json"))


async def _no_sleep(_: float) -> None:
    return None


def _chain(sub: FakeSubstrate, key: Keypair, **kw: Any) -> SubtensorChain:
    return SubtensorChain(
        network="ws://fake:1", netuid=NETUID, hotkey=key, substrate=sub, sleep=_no_sleep, **kw
    )


ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")


@pytest.fixture
def sub() -> FakeSubstrate:
    s = FakeSubstrate()
    s.make_subnet()
    s.register(ALICE.ss58_address, stake=2000, validator=True)
    s.register(BOB.ss58_address)
    return s


async def test_metagraph_decoding(sub: FakeSubstrate) -> None:
    sub.graph["axons"][1] = {
        "ip": int(ipaddress.IPv4Address("10.0.0.2")),
        "port": 8091,  # type: ignore[index]
        "ip_type": 4,
    }
    sub.graph["tao_stake"][0] = 5 * RAO  # type: ignore[index]
    async with _chain(sub, ALICE) as chain:
        mg = await chain.metagraph()
    assert mg.block == 1000
    assert mg.netuid == NETUID
    a, b = mg.neurons
    assert (a.uid, a.hotkey, a.validator_permit, a.stake_tao, a.stake_alpha) == (
        0,
        ALICE.ss58_address,
        True,
        5.0,
        2000.0,
    )
    assert a.endpoint is None
    assert b.endpoint == "10.0.0.2:8091"
    assert mg.by_hotkey(BOB.ss58_address) == b


async def test_missing_subnet_raises() -> None:
    s = FakeSubstrate()
    async with _chain(s, ALICE) as chain:
        with pytest.raises(SubnetNotFoundError):
            await chain.metagraph()


async def test_commit_composes_raw64_signed_by_hotkey(sub: FakeSubstrate) -> None:
    async with _chain(sub, BOB) as chain:
        res = await chain.commit(b"a" * 64)
        assert res.ok
        assert res.block == 1000
        call, signer = sub.submitted[-1]
        assert (call.module, call.function) == ("Commitments", "set_commitment")
        assert call.params == {"netuid": NETUID, "info": {"fields": [{"Raw64": b"a" * 64}]}}
        assert signer == BOB.ss58_address
        cs = await chain.commitments()
    assert cs[BOB.ss58_address].data == "a" * 64
    assert cs[BOB.ss58_address].block == 1000
    assert cs[BOB.ss58_address].uid == 1


async def test_weights_plain_path(sub: FakeSubstrate) -> None:
    async with _chain(sub, ALICE) as chain:
        res = await chain.set_weights({0: 0.25, 1: 1.0})
    assert res.ok
    assert res.reveal_round is None
    call, _ = sub.submitted[-1]
    assert call.function == "set_mechanism_weights"
    assert call.params["dests"] == [0, 1]
    assert call.params["weights"] == [16384, 65535]
    assert call.params["version_key"] == 3000


async def test_weights_commit_reveal_path(sub: FakeSubstrate) -> None:
    for key, value in (
        ("CommitRevealWeightsEnabled", True),
        ("Tempo", 360),
        ("RevealPeriodEpochs", 1),
    ):
        sub.storage[("SubtensorModule", key, (NETUID,))] = value
    async with _chain(sub, ALICE) as chain:
        res = await chain.set_weights({0: 1.0, 1: 1.0}, version_key=3001)
    assert res.ok
    assert isinstance(res.reveal_round, int)
    assert res.reveal_round > 0
    call, _ = sub.submitted[-1]
    assert call.function == "commit_timelocked_mechanism_weights"
    assert call.params["commit_reveal_version"] == 4
    assert len(call.params["commit"]) > 0


async def test_weights_refusals_are_results(sub: FakeSubstrate) -> None:
    async with _chain(sub, ALICE) as chain:
        sub.storage[("SubtensorModule", "LastUpdate", (NETUID,))][0] = 990
        res = await chain.set_weights({1: 1.0})
        assert res.status is WriteStatus.RATE_LIMITED
        assert "rate limit" in res.reason
        sub.storage[("SubtensorModule", "LastUpdate", (NETUID,))][0] = 0
        sub.results.append(
            bt.ExtrinsicResult(
                success=False,
                message="too fast",
                error=bt.ChainError(
                    "x", name="SettingWeightsTooFast", code=bt.ErrorCode.RATE_LIMITED
                ),
            )
        )
        res = await chain.set_weights({1: 1.0})
        assert res.status is WriteStatus.RATE_LIMITED
        assert "SettingWeightsTooFast" in res.reason
        sub.results.append(
            bt.ExtrinsicResult(
                success=False,
                message="bad key",
                error=bt.ChainError(
                    "x", name="IncorrectWeightVersionKey", code=bt.ErrorCode.INVALID_ARGUMENT
                ),
            )
        )
        res = await chain.set_weights({1: 1.0})
        assert res.status is WriteStatus.REJECTED
        assert "IncorrectWeightVersionKey" in res.reason
        res = await chain.set_weights({1: float("nan")})
        assert res.status is WriteStatus.REJECTED
    async with _chain(sub, Keypair.create_from_uri("//Eve")) as chain:
        res = await chain.set_weights({1: 1.0})
        assert res.status is WriteStatus.REJECTED
        assert "not registered" in res.reason


async def test_serve_composes_serve_axon(sub: FakeSubstrate) -> None:
    async with _chain(sub, BOB) as chain:
        assert (await chain.serve("127.0.0.1", 8091)).ok
        call, _ = sub.submitted[-1]
        assert call.function == "serve_axon"
        assert (call.params["ip"], call.params["port"], call.params["ip_type"]) == (
            2130706433,
            8091,
            4,
        )
        assert (await chain.metagraph()).neurons[1].endpoint == "127.0.0.1:8091"


async def test_reads_reconnect_after_dropped_socket(sub: FakeSubstrate) -> None:
    chain = _chain(sub, ALICE, retries=3)
    await chain.block()
    sub.failures.extend([bt.RpcConnectionError("socket closed")] * 2)
    block = await chain.block()
    assert block.number == 1000
    assert block.hash == f"0x{1000:064x}"
    assert chain.reconnects == 2
    assert sub.connects == 3
    sub.failures.extend([bt.RpcConnectionError("socket closed")] * 4)
    with pytest.raises(ChainUnavailableError, match="after 4 attempts"):
        await chain.metagraph()
    await chain.aclose()


async def test_deadline_on_every_call(sub: FakeSubstrate) -> None:
    import asyncio

    class Hanging(FakeSubstrate):
        async def block_number(self) -> int:
            await asyncio.sleep(10)
            return 0

    slow = Hanging()
    slow.make_subnet()
    chain = _chain(slow, ALICE, call_timeout_s=0.05, retries=1)
    with pytest.raises(ChainUnavailableError, match=r"0\.05s"):
        await chain.block()
    assert chain.reconnects == 2


async def test_write_transport_failure_raises_and_is_not_resent(sub: FakeSubstrate) -> None:
    async with _chain(sub, BOB) as chain:
        await chain.block()
        sub.results.append(bt.RpcConnectionError("socket closed"))
        with pytest.raises(ChainUnavailableError):
            await chain.commit(b"x" * 64)
        assert len(sub.submitted) == 1
        assert (await chain.commit(b"y" * 64)).ok  # next call reconnects


async def test_unexpected_sdk_error_is_surfaced(sub: FakeSubstrate) -> None:
    async with _chain(sub, ALICE, retries=0) as chain:
        await chain.block()
        sub.failures.append(bt.ChainError("storage decode failed", name="Decode"))
        with pytest.raises(ChainError, match="storage decode failed"):
            await chain.block()
