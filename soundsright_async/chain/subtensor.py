"""``Chain`` adapter on the bittensor v11 SDK (``bt.Client`` over a ``bt.Substrate``).

* Every call has a deadline (``call_timeout_s``). A read that fails on the transport (dropped
  socket, refused connection, deadline) closes the client and is retried on a fresh connection
  after an exponential back-off, up to ``retries`` times, then raises ``ChainUnavailableError``.
  Writes are never re-sent automatically (a resend could land twice); the connection is still
  dropped so the caller's next call reconnects.
* Weights go through ``bt.SetWeights``, which picks the plain or the commit-reveal (timelock)
  path from the subnet's hyperparameters; ``version_key`` defaults to ``protocol.VERSION_KEY``.
* A write the chain refuses (preflight or on chain) comes back as a ``WriteResult`` with the
  chain's error name; bad SDK usage and unexpected SDK errors raise ``ChainError``.

Tests pass a fake ``bt.Substrate`` as ``substrate=`` (reference/bittensor_v11.md §8).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import bittensor as bt
from bittensor import settings as bt_settings

from ..protocol import VERSION_KEY
from ..wallet import Hotkey
from ._values import format_endpoint
from .base import Chain
from .errors import ChainError, ChainUnavailableError, SubnetNotFoundError
from .types import Block, Commitment, Metagraph, Neuron, WriteResult

__all__ = ["SubtensorChain"]

T = TypeVar("T")
_TRANSPORT = (bt.RpcConnectionError, bt.ConnectionNotReady, ConnectionError, TimeoutError, OSError)


class SubtensorChain(Chain):
    def __init__(
        self,
        *,
        network: str,
        netuid: int,
        hotkey: Hotkey,
        call_timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        substrate: Any = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.network = network
        self.netuid = netuid
        self.hotkey = hotkey.ss58_address
        self._key = hotkey
        self._timeout = call_timeout_s
        self._retries = retries
        self._backoff = backoff_s
        self._backoff_max = backoff_max_s
        self._injected = substrate
        self._sleep = sleep
        self._client: bt.Client | None = None
        self._substrate: Any = None
        self._lock = asyncio.Lock()
        self.reconnects = 0

    # --- connection ------------------------------------------------------------------------

    def _new_substrate(self) -> Any:
        if self._injected is not None:
            return self._injected
        label, endpoint = bt_settings.resolve_endpoint(self.network)
        return bt.RpcSubstrate(
            endpoint,
            fallback_endpoints=[
                u for u in bt_settings.default_fallback_endpoints(label) if u != endpoint
            ],
            archive_endpoints=bt_settings.default_archive_endpoints(label),
        )

    async def _connected(self) -> tuple[bt.Client, Any]:
        async with self._lock:
            if self._client is None:
                substrate = self._new_substrate()
                client = bt.Client(self.network, substrate=substrate)
                await client.connect()
                self._client, self._substrate = client, substrate
            return self._client, self._substrate

    async def _drop(self, *, failed: bool = True) -> None:
        async with self._lock:
            client, self._client, self._substrate = self._client, None, None
        if client is not None:
            self.reconnects += int(failed)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await client.close()

    def _error(self, cls: type[ChainError], problem: str) -> ChainError:
        return cls(problem, network=self.network, netuid=self.netuid)

    async def _read(self, what: str, fn: Callable[[bt.Client, Any], Awaitable[T]]) -> T:
        for attempt in range(self._retries + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    client, substrate = await self._connected()
                    return await fn(client, substrate)
            except _TRANSPORT as exc:
                await self._drop()
                if attempt == self._retries:
                    detail = str(exc) or f"no answer within {self._timeout:g}s"
                    raise self._error(
                        ChainUnavailableError, f"{what}: {detail} (after {attempt + 1} attempts)"
                    ) from exc
                await self._sleep(min(self._backoff_max, self._backoff * 2**attempt))
            except bt.BittensorError as exc:
                raise self._error(ChainError, f"{what}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _write(self, what: str, fn: Callable[[bt.Client], Awaitable[Any]]) -> WriteResult:
        try:
            async with asyncio.timeout(self._timeout):
                client, _ = await self._connected()
                result = await fn(client)
        except _TRANSPORT as exc:
            await self._drop()
            detail = str(exc) or f"no answer within {self._timeout:g}s"
            raise self._error(ChainUnavailableError, f"{what}: {detail}") from exc
        except bt.ChainError as exc:  # preflight: not registered, rate limited, too few weights
            return _refusal(exc)
        except bt.BittensorError as exc:  # bad input (NaN, duplicate uids, all zero), policy
            return WriteResult.rejected(f"InvalidArgument: {exc}")
        if result.success:
            block = await self._block_of(result)
            return WriteResult.success(block, reveal_round=_reveal_round(result))
        if result.error is not None:
            return _refusal(result.error)
        return WriteResult.rejected(result.message or "extrinsic failed")

    async def _block_of(self, result: Any) -> int | None:
        ext = getattr(result, "extrinsic_id", None)
        if isinstance(ext, str) and "-" in ext:
            with contextlib.suppress(ValueError):
                return int(ext.split("-", 1)[0])
        return None

    # --- reads -----------------------------------------------------------------------------

    async def block(self) -> Block:
        async def go(_: bt.Client, substrate: Any) -> Block:
            number = int(await substrate.block_number())
            return Block(number, str(await substrate.block_hash(number)))

        return await self._read("block", go)

    async def block_hash(self, number: int) -> str:
        async def go(_: bt.Client, substrate: Any) -> str:
            value = await substrate.block_hash(number)
            if not value:
                raise bt.BittensorError(f"block {number} is not known to the node")
            return str(value)

        return await self._read(f"block hash {number}", go)

    async def block_time(self) -> float:
        async def go(client: bt.Client, _: Any) -> float:
            return float(await client.block_time())

        return await self._read("block time", go)

    async def metagraph(self) -> Metagraph:
        async def go(client: bt.Client, _: Any) -> Any:
            return await client.subnets.metagraph(self.netuid, commitments=False)

        mg = await self._read("metagraph", go)
        if mg is None:
            raise self._error(SubnetNotFoundError, "subnet does not exist")
        neurons = tuple(
            Neuron(
                uid=int(n.uid),
                hotkey=str(n.hotkey),
                coldkey=str(n.coldkey),
                stake_tao=float(n.tao_stake.amount),
                stake_alpha=float(n.total_stake.amount),
                validator_permit=bool(n.validator_permit),
                endpoint=str(n.axon) if n.axon else None,
            )
            for n in mg
        )
        return Metagraph(self.netuid, int(mg.block), neurons)

    async def commitments(self) -> dict[str, Commitment]:
        async def go(client: bt.Client, _: Any) -> Any:
            return await client.subnets.commitments(self.netuid)

        raw = await self._read("commitments", go)
        return {
            str(hk): Commitment(
                str(hk), None if c.uid is None else int(c.uid), str(c.data), int(c.block)
            )
            for hk, c in raw.items()
        }

    # --- writes ----------------------------------------------------------------------------

    async def commit(self, data: bytes) -> WriteResult:
        if not 0 < len(data) <= 128:
            return WriteResult.rejected("InvalidArgument: a raw commitment holds 1..128 bytes")
        call = bt.calls.Commitments.set_commitment(
            netuid=self.netuid, info={"fields": [{f"Raw{len(data)}": bytes(data)}]}
        )
        return await self._write(
            "commit", lambda c: c.submit_call(call, self._key, signer="hotkey")
        )

    async def set_weights(
        self, weights: Mapping[int, float], *, version_key: int = VERSION_KEY
    ) -> WriteResult:
        try:
            intent = bt.SetWeights(
                netuid=self.netuid,
                weights={int(u): float(w) for u, w in weights.items()},
                version_key=version_key,
            )
        except bt.BittensorError as exc:
            return WriteResult.rejected(f"InvalidArgument: {exc}")
        return await self._write(
            "set weights",
            lambda c: c.execute(intent, self._key, wait_for_finalization=False),
        )

    async def serve(self, ip: str, port: int) -> WriteResult:
        try:
            format_endpoint(ip, port)  # the chain refuses 0.0.0.0 and port 0 too
            intent = bt.ServeAxon(netuid=self.netuid, ip=ip, port=port, protocol=4, version=1)
        except (bt.BittensorError, ValueError) as exc:
            return WriteResult.rejected(f"InvalidIpAddress: {exc}")
        return await self._write("serve", lambda c: c.execute(intent, self._key))

    async def aclose(self) -> None:
        await self._drop(failed=False)


def _refusal(err: Any) -> WriteResult:
    code = getattr(err, "code", None)
    name = getattr(err, "name", None) or (str(code.value) if code is not None else "ChainError")
    message = getattr(err, "message", None) or str(err)
    reason = f"{name}: {message}"
    if code == bt.ErrorCode.RATE_LIMITED:
        return WriteResult.rate_limited(reason)
    return WriteResult.rejected(reason)


def _reveal_round(result: Any) -> int | None:
    value = (getattr(result, "data", None) or {}).get("reveal_round")
    return int(value) if value is not None else None
