"""``Chain`` adapter for the embedded dev chain (one SQLite file, see ``_localnet_db``).

Every SQLite call runs in a worker thread (at most ``max_threads`` at once) under the call's
deadline, so the event loop never blocks. Writes are signed with our hotkey and checked by the
store like the real chain checks extrinsics.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import orjson

from ..protocol import VERSION_KEY
from ..wallet import Hotkey
from ._localnet_db import LocalnetDB, SignedWrite, WriteKind, write_message
from .base import Chain
from .errors import ChainUnavailableError
from .types import Block, Commitment, Metagraph, WriteResult

__all__ = ["LocalnetChain", "sign_write"]

T = TypeVar("T")


def sign_write(
    hotkey: Hotkey, *, chain_id: str, netuid: int, kind: WriteKind, body: bytes, nonce: int
) -> SignedWrite:
    msg = write_message(
        chain_id=chain_id,
        netuid=netuid,
        kind=kind,
        body=body,
        nonce=nonce,
        hotkey=hotkey.ss58_address,
    )
    return SignedWrite(
        netuid, hotkey.ss58_address, kind, body, nonce, bytes(hotkey.sign(msg)), hotkey.crypto_type
    )


class LocalnetChain(Chain):
    def __init__(
        self,
        path: Path | str,
        *,
        netuid: int,
        hotkey: Hotkey,
        call_timeout_s: float = 30.0,
        max_threads: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = LocalnetDB(path, clock=clock)
        self.netuid = netuid
        self.hotkey = hotkey.ss58_address
        self._key = hotkey
        self._timeout = call_timeout_s
        self._threads = asyncio.Semaphore(max_threads)
        self._last_nonce = 0
        self._writes = asyncio.Lock()  # nonces must reach the store in the order they were made

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._threads:
                    return await asyncio.to_thread(fn, *args)
        except TimeoutError:
            raise ChainUnavailableError(
                f"{getattr(fn, '__name__', 'call')} took longer than {self._timeout:g}s",
                network="localnet",
                netuid=self.netuid,
            ) from None
        except sqlite3.Error as exc:  # a corrupt or truncated file is a chain error, not a bug
            raise ChainUnavailableError(
                f"{self.db.path}: {exc}", network="localnet", netuid=self.netuid
            ) from exc

    async def block(self) -> Block:
        return await self._run(self.db.head)

    async def block_hash(self, number: int) -> str:
        return await self._run(self.db.block_hash, number)

    async def block_time(self) -> float:
        return (await self._run(self.db.meta)).block_time

    async def metagraph(self) -> Metagraph:
        return await self._run(self.db.metagraph, self.netuid)

    async def commitments(self) -> dict[str, Commitment]:
        return await self._run(self.db.commitments, self.netuid)

    def _nonce(self) -> int:
        self._last_nonce = max(time.time_ns(), self._last_nonce + 1)
        return self._last_nonce

    async def _write(self, kind: WriteKind, body: bytes) -> WriteResult:
        meta = await self._run(self.db.meta)
        async with self._writes:
            write = sign_write(
                self._key,
                chain_id=meta.chain_id,
                netuid=self.netuid,
                kind=kind,
                body=body,
                nonce=self._nonce(),
            )
            return await self._run(self.db.submit, write)

    async def commit(self, data: bytes) -> WriteResult:
        return await self._write("commit", bytes(data))

    async def set_weights(
        self, weights: Mapping[int, float], *, version_key: int = VERSION_KEY
    ) -> WriteResult:
        body = orjson.dumps({str(int(u)): float(w) for u, w in weights.items()})
        return await self._write("weights", body)

    async def serve(self, ip: str, port: int) -> WriteResult:
        return await self._write("serve", orjson.dumps([ip, port]))

    async def aclose(self) -> None:
        return None
