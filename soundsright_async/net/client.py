"""btauth/1 signing HTTP client: signs exactly the bytes and path it sends.

Each request runs under one total deadline (waiting for a concurrency slot, connecting,
sending, reading the capped response) and takes a fresh nonce after it gets its slot, so a
queued request is never stale. Failures raise ``PeerError`` subclasses carrying the peer's
endpoint and hotkey; a non-2xx answer is returned, not raised, by ``post``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import aiohttp
import yarl
from bittensor import http_auth as ha
from pydantic import BaseModel

from .._exceptions import SoundsrightError
from ..protocol import ProtocolError, decode_message, encode_message
from ..wallet import Hotkey

__all__ = [
    "PeerError",
    "PeerProtocolError",
    "PeerRejectedError",
    "PeerResponse",
    "PeerUnavailableError",
    "SignedClient",
]

M = TypeVar("M", bound=BaseModel)


class PeerError(SoundsrightError):
    def __init__(self, problem: str, *, endpoint: str, hotkey: str, path: str) -> None:
        self.problem = problem
        self.endpoint = endpoint
        self.hotkey = hotkey
        self.path = path
        super().__init__(f"peer {hotkey} at {endpoint}{path}: {problem}")


class PeerUnavailableError(PeerError):
    """Could not connect, or the deadline passed."""


class PeerRejectedError(PeerError):
    """The peer answered with an error status."""

    def __init__(self, problem: str, *, status: int, endpoint: str, hotkey: str, path: str) -> None:
        self.status = status
        super().__init__(problem, endpoint=endpoint, hotkey=hotkey, path=path)


class PeerProtocolError(PeerError):
    """The peer's answer does not follow the protocol (bad JSON, wrong fields, too large)."""


@dataclass(frozen=True, slots=True)
class PeerResponse:
    status: int
    body: bytes


class SignedClient:
    def __init__(
        self,
        hotkey: Hotkey,
        *,
        concurrency: int = 16,
        deadline_s: float = 10.0,
        max_response_bytes: int = 1024 * 1024,
        scheme: str = "http",
        local_addr: tuple[str, int] | None = None,
    ) -> None:
        self._key = hotkey
        self._slots = asyncio.Semaphore(concurrency)
        self._deadline = deadline_s
        self._max = max_response_bytes
        self._scheme = scheme
        self._local_addr = local_addr
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = concurrency

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._concurrency, local_addr=self._local_addr
                ),
                auto_decompress=False,
            )
        return self._session

    async def post(
        self,
        endpoint: str,
        path: str,
        body: bytes,
        *,
        receiver: str,
        deadline_s: float | None = None,
    ) -> PeerResponse:
        """POST signed ``body`` to ``http://endpoint/path``; ``receiver`` is the peer's hotkey."""
        url = yarl.URL(f"{self._scheme}://{endpoint}{path}", encoded=True)
        ctx = {"endpoint": endpoint, "hotkey": receiver, "path": path}
        deadline = self._deadline if deadline_s is None else deadline_s
        try:
            async with asyncio.timeout(deadline), self._slots:
                headers = ha.sign(
                    self._key,
                    method="POST",
                    path=url.raw_path_qs,
                    body=body,
                    receiver_ss58=receiver,
                )
                headers["Content-Type"] = "application/json"
                async with self._http().post(url, data=body, headers=headers) as resp:
                    return PeerResponse(resp.status, await self._read(resp, ctx))
        except TimeoutError:
            raise PeerUnavailableError(f"no answer within {deadline:g}s", **ctx) from None
        except aiohttp.ClientError as exc:
            raise PeerUnavailableError(f"{type(exc).__name__}: {exc}", **ctx) from exc

    async def _read(self, resp: aiohttp.ClientResponse, ctx: dict[str, str]) -> bytes:
        if resp.content_length is not None and resp.content_length > self._max:
            raise PeerProtocolError(f"response larger than {self._max} bytes", **ctx)
        chunks: list[bytes] = []
        size = 0
        while chunk := await resp.content.readany():
            size += len(chunk)
            if size > self._max:
                raise PeerProtocolError(f"response larger than {self._max} bytes", **ctx)
            chunks.append(chunk)
        return b"".join(chunks)

    async def call(
        self,
        endpoint: str,
        path: str,
        message: BaseModel,
        response_model: type[M],
        *,
        receiver: str,
        deadline_s: float | None = None,
    ) -> M | None:
        """Send a protocol message; the validated answer, or None on 404 (nothing to report).

        Any other non-2xx status raises ``PeerRejectedError`` with the peer's error text.
        """
        resp = await self.post(
            endpoint, path, encode_message(message), receiver=receiver, deadline_s=deadline_s
        )
        ctx = {"endpoint": endpoint, "hotkey": receiver, "path": path}
        if resp.status == 404:
            return None
        if not 200 <= resp.status < 300:
            text = resp.body[:200].decode("utf-8", "replace")
            raise PeerRejectedError(f"HTTP {resp.status}: {text}", status=resp.status, **ctx)
        try:
            return decode_message(response_model, resp.body)
        except ProtocolError as exc:
            raise PeerProtocolError(str(exc), **ctx) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> SignedClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
