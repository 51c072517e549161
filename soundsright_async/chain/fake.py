"""In-memory ``Chain`` for unit tests of orchestration code (ships in the package, R3).

Several ``FakeChain`` objects (a miner's and a validator's) share one ``FakeNetwork``. The
network's block only moves when a test calls ``advance``. ``inject`` queues an exception (raised
by the next call of any method) or a ``WriteResult`` (returned by the next write) so tests can
drive failure paths.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..protocol import VERSION_KEY
from ._values import commitment_text, format_endpoint, normalize_weights
from .base import Chain
from .errors import ChainError
from .types import Block, Commitment, Metagraph, Neuron, WriteResult

__all__ = ["FakeChain", "FakeNetwork"]


@dataclass
class FakeNetwork:
    netuid: int = 1
    block: int = 1
    block_time: float = 12.0
    weights_rate_limit: int = 100
    neurons: list[Neuron] = field(default_factory=list)
    commitments: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    weights: dict[int, dict[int, int]] = field(default_factory=dict)
    """validator uid -> {uid: u16}"""
    last_update: dict[int, int] = field(default_factory=dict)
    pending: deque[Exception | WriteResult] = field(default_factory=deque)

    def register(
        self,
        hotkey: str,
        *,
        coldkey: str = "",
        stake: float = 0.0,
        validator: bool = False,
    ) -> int:
        """Register a hotkey (idempotent: updates stake and permit); returns its uid."""
        for n in self.neurons:
            if n.hotkey == hotkey:
                new = replace(n, stake_tao=stake, stake_alpha=stake, validator_permit=validator)
                self.neurons[n.uid] = new
                return n.uid
        uid = len(self.neurons)
        self.neurons.append(
            Neuron(uid, hotkey, coldkey or hotkey, stake, stake, validator, endpoint=None)
        )
        return uid

    def advance(self, blocks: int = 1) -> int:
        self.block += blocks
        return self.block

    def inject(self, item: Exception | WriteResult) -> None:
        self.pending.append(item)

    def chain(self, hotkey: str) -> FakeChain:
        return FakeChain(self, hotkey)


class FakeChain(Chain):
    def __init__(self, network: FakeNetwork, hotkey: str) -> None:
        self.network = network
        self.netuid = network.netuid
        self.hotkey = hotkey
        self.closed = False

    def _next(self, write: bool = False) -> WriteResult | None:
        net = self.network
        if self.closed:
            raise ChainError("chain is closed", network="fake", netuid=self.netuid)
        if net.pending and (isinstance(net.pending[0], Exception) or write):
            item = net.pending.popleft()
            if isinstance(item, Exception):
                raise item
            return item
        return None

    def _uid(self) -> int | None:
        n = Metagraph(self.netuid, self.network.block, tuple(self.network.neurons))
        me = n.by_hotkey(self.hotkey)
        return None if me is None else me.uid

    async def block(self) -> Block:
        self._next()
        b = self.network.block
        return Block(b, f"0x{b:064x}")

    async def block_hash(self, number: int) -> str:
        self._next()
        if not 0 <= number <= self.network.block:
            raise ChainError(
                f"block {number} does not exist yet (head is {self.network.block})",
                network="fake",
                netuid=self.netuid,
            )
        return f"0x{number:064x}"

    async def block_time(self) -> float:
        self._next()
        return self.network.block_time

    async def metagraph(self) -> Metagraph:
        self._next()
        return Metagraph(self.netuid, self.network.block, tuple(self.network.neurons))

    async def commitments(self) -> dict[str, Commitment]:
        self._next()
        uids = {n.hotkey: n.uid for n in self.network.neurons}
        return {
            hk: Commitment(hk, uids.get(hk), commitment_text(data), block)
            for hk, (data, block) in self.network.commitments.items()
        }

    async def commit(self, data: bytes) -> WriteResult:
        if (injected := self._next(write=True)) is not None:
            return injected
        if self._uid() is None:
            return WriteResult.rejected(f"AccountNotAllowedCommit: {self.hotkey} not registered")
        if len(data) > 128:
            return WriteResult.rejected("InvalidArgument: a raw commitment holds at most 128 bytes")
        self.network.commitments[self.hotkey] = (bytes(data), self.network.block)
        return WriteResult.success(self.network.block)

    async def set_weights(
        self, weights: Mapping[int, float], *, version_key: int = VERSION_KEY
    ) -> WriteResult:
        if (injected := self._next(write=True)) is not None:
            return injected
        net = self.network
        uid = self._uid()
        if uid is None:
            return WriteResult.rejected(f"NotRegistered: {self.hotkey} is not registered")
        if not net.neurons[uid].validator_permit:
            return WriteResult.rejected("NeuronNoValidatorPermit: no validator permit")
        try:
            values = normalize_weights(weights)
        except ValueError as exc:
            return WriteResult.rejected(f"InvalidArgument: {exc}")
        if max(values) >= len(net.neurons):
            return WriteResult.rejected("UidVecContainInvalidOne: unknown uid")
        last = net.last_update.get(uid)
        if last is not None and net.block - last < net.weights_rate_limit:
            return WriteResult.rate_limited(
                f"SettingWeightsTooFast: last set {net.block - last} blocks ago; "
                f"the rate limit is {net.weights_rate_limit} blocks"
            )
        net.weights[uid] = values
        net.last_update[uid] = net.block
        return WriteResult.success(net.block)

    async def serve(self, ip: str, port: int) -> WriteResult:
        if (injected := self._next(write=True)) is not None:
            return injected
        uid = self._uid()
        if uid is None:
            return WriteResult.rejected(f"HotKeyNotRegisteredInSubNet: {self.hotkey}")
        try:
            endpoint = format_endpoint(ip, port)
        except ValueError as exc:
            return WriteResult.rejected(f"InvalidIpAddress: {exc}")
        self.network.neurons[uid] = replace(self.network.neurons[uid], endpoint=endpoint)
        return WriteResult.success(self.network.block)

    async def aclose(self) -> None:
        self.closed = True
