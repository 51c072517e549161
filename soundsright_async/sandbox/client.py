"""The model container's HTTP API (models.md §4), with a **total** deadline on every step.

status → prepare → upload-audio → enhance → download-enhanced → reset. Each call runs inside
``asyncio.timeout(step deadline)``, so a server that trickles bytes is cut off at the deadline
(not at a per-read timeout). Redirects are refused, proxies from the environment ignored,
bodies are not decompressed, JSON answers are capped at ``max_json_bytes`` and the download at
``max_download_bytes``; the zip is then checked member by member before anything is written.
A failure raises ``StepFailed(step, reason, detail)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .safezip import UnsafeZip, extract_zip

__all__ = ["STEPS", "ClientLimits", "ModelClient", "StepFailed", "StepTimeouts"]

STEPS = ("status", "prepare", "upload", "enhance", "download", "reset")


class StepFailed(Exception):
    """One API step failed. ``reason``: ``timeout``, ``http_status``, ``bad_response``,
    ``connection``, ``too_large`` or a zip reason (``path_traversal``, ``absolute_path``, ...)."""

    def __init__(self, step: str, reason: str, detail: str) -> None:
        self.step = step
        self.reason = reason
        self.detail = detail
        super().__init__(f"{step}: {reason}: {detail}")


@dataclass(frozen=True, slots=True)
class StepTimeouts:
    """Total deadline of each step, in seconds (defaults from the reference, models.md §4)."""

    status: float = 100.0
    prepare: float = 30.0
    upload: float = 30.0
    enhance: float = 600.0
    download: float = 30.0
    reset: float = 10.0

    def for_rate(self, sample_rate: int, factor_48k: float = 1.75) -> StepTimeouts:
        """Enhance gets ``factor_48k`` times longer at 48 kHz (the reference's 1.75)."""
        if sample_rate < 48000:
            return self
        return StepTimeouts(
            self.status,
            self.prepare,
            self.upload,
            self.enhance * factor_48k,
            self.download,
            self.reset,
        )


@dataclass(frozen=True, slots=True)
class ClientLimits:
    max_json_bytes: int = 1024**2
    max_download_bytes: int = 1024**3
    max_extracted_bytes: int = 2 * 1024**3
    member_slack: int = 8
    """The zip may hold this many members more than there were inputs (e.g. a log file)."""
    status_poll_s: float = 0.5


class ModelClient:
    """One model container at ``base_url``. Use as ``async with ModelClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: StepTimeouts | None = None,
        limits: ClientLimits | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or StepTimeouts()
        self.limits = limits or ClientLimits()
        self._session: aiohttp.ClientSession | None = None
        self.last_status_error = ""

    async def __aenter__(self) -> ModelClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4, force_close=True),
            trust_env=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ModelClient is not open; use `async with`")
        return self._session

    async def _read_capped(self, step: str, resp: aiohttp.ClientResponse, cap: int) -> bytes:
        if resp.content_length is not None and resp.content_length > cap:
            raise StepFailed(step, "too_large", f"response declares {resp.content_length} bytes")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            body += chunk
            if len(body) > cap:
                raise StepFailed(step, "too_large", f"response is over {cap} bytes")
        return bytes(body)

    async def _json(self, step: str, method: str, path: str, **kw: Any) -> dict[str, Any]:
        async with self._http.request(
            method, self.base_url + path, allow_redirects=False, **kw
        ) as resp:
            body = await self._read_capped(step, resp, self.limits.max_json_bytes)
            if resp.status != 200:
                raise StepFailed(step, "http_status", f"HTTP {resp.status}: {body[:200]!r}")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise StepFailed(step, "bad_response", f"not JSON: {body[:200]!r}") from None
        if not isinstance(data, dict):
            raise StepFailed(step, "bad_response", f"not a JSON object: {body[:200]!r}")
        return data

    async def _step(self, step: str, deadline: float, coro: Any) -> Any:
        try:
            async with asyncio.timeout(deadline):
                return await coro
        except TimeoutError:
            raise StepFailed(step, "timeout", f"no complete answer within {deadline:g} s") from None
        except aiohttp.ClientError as exc:
            raise StepFailed(step, "connection", f"{type(exc).__name__}: {exc}") from None

    # -- the steps -----------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Poll ``GET /status/`` until ``container_running`` is truthy (total deadline)."""

        async def poll() -> None:
            last = "no answer"
            while True:
                try:
                    async with asyncio.timeout(5.0):
                        data = await self._json("status", "GET", "/status/")
                    if data.get("container_running"):
                        return
                    last = f"container_running is {data.get('container_running')!r}"
                except (TimeoutError, aiohttp.ClientError) as exc:
                    last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                except StepFailed as exc:
                    last = exc.detail
                    if exc.reason == "too_large":
                        raise
                self.last_status_error = last
                await asyncio.sleep(self.limits.status_poll_s)

        self.last_status_error = ""
        try:
            await self._step("status", self.timeouts.status, poll())
        except StepFailed as exc:
            if exc.reason == "timeout" and self.last_status_error:
                raise StepFailed(
                    "status", "timeout", f"{exc.detail}; last: {self.last_status_error}"
                ) from None
            raise

    async def prepare(self) -> None:
        data = await self._step(
            "prepare", self.timeouts.prepare, self._json("prepare", "POST", "/prepare/")
        )
        if not data.get("preparations"):
            raise StepFailed(
                "prepare", "bad_response", f"preparations is {data.get('preparations')!r}"
            )

    async def upload(self, files: Sequence[Path]) -> None:
        names = sorted(p.name for p in files)
        payloads = await asyncio.to_thread(lambda: [(p.name, p.read_bytes()) for p in files])
        form = aiohttp.FormData()
        for name, data in payloads:
            form.add_field("files", data, filename=name, content_type="audio/wav")
        data = await self._step(
            "upload",
            self.timeouts.upload,
            self._json("upload", "POST", "/upload-audio/", data=form),
        )
        got = data.get("uploaded_files")
        if not data.get("status") or not isinstance(got, list) or sorted(map(str, got)) != names:
            raise StepFailed(
                "upload", "bad_response", f"uploaded_files {got!r}, status {data.get('status')!r}"
            )

    async def enhance(self) -> None:
        data = await self._step(
            "enhance", self.timeouts.enhance, self._json("enhance", "POST", "/enhance/")
        )
        if not data.get("status"):
            raise StepFailed("enhance", "bad_response", f"status is {data.get('status')!r}")

    async def download(self, dest: Path, *, inputs: int) -> list[str]:
        """Download the zip to ``dest/.enhanced.zip``, check it and extract into ``dest``.
        The archive is removed whatever happens (a cut-off download included)."""
        archive = dest / ".enhanced.zip"
        try:
            await self._step("download", self.timeouts.download, self._fetch_zip(archive))
            return await asyncio.to_thread(
                extract_zip,
                archive,
                dest,
                max_members=inputs + self.limits.member_slack,
                max_bytes=self.limits.max_extracted_bytes,
            )
        except UnsafeZip as exc:
            raise StepFailed("download", exc.reason, str(exc)) from None
        finally:
            await asyncio.shield(asyncio.to_thread(archive.unlink, missing_ok=True))

    async def _fetch_zip(self, archive: Path) -> None:
        cap = self.limits.max_download_bytes
        async with self._http.get(
            self.base_url + "/download-enhanced/", allow_redirects=False
        ) as resp:
            if resp.status != 200:
                raise StepFailed("download", "http_status", f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > cap:
                raise StepFailed("download", "too_large", f"declares {resp.content_length} bytes")
            fh = await asyncio.to_thread(open, archive, "wb")
            try:
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > cap:
                        raise StepFailed("download", "too_large", f"the zip is over {cap} bytes")
                    await asyncio.to_thread(fh.write, chunk)
            finally:
                await asyncio.to_thread(fh.close)

    async def reset(self) -> None:
        data = await self._step(
            "reset", self.timeouts.reset, self._json("reset", "POST", "/reset/")
        )
        if not data.get("status") or data.get("noisy") != [] or data.get("enhanced") != []:
            raise StepFailed("reset", "bad_response", f"answer {data!r}"[:300])
