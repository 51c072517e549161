"""The ``elevenlabs`` speech source: the ElevenLabs SDK's async client, bounded and retried.

* Voices: every voice of the account (``GET /v2/voices``, following ``next_page_token``), sorted
  by id so the seed's draw does not depend on the API's page order.
* Clips: ``POST /v1/text-to-speech/{voice}`` with the configured model and output format
  (``pcm_44100`` is raw 16-bit little-endian mono; ``mp3_44100_*`` is decoded with soundfile in
  the process pool, no ffmpeg). At most ``concurrency`` requests are in flight.
* Retries: 429, 408, 5xx, timeouts and connection errors are retried with exponential backoff and
  full jitter (``Retry-After`` is honoured, capped at the maximum backoff) up to
  ``max_attempts``, all within a total ``clip_deadline_s`` per clip. The SDK's own retries are off.
* A refused key or an exhausted quota (401/402/403, or a body whose status says
  ``quota_exceeded``) raises ``SpeechAccountError`` at once, which stops the whole run.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np
import soundfile as sf
import structlog
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from ...config import DatasetSettings
from ..pool import ScoringPool
from ._types import Audio
from .errors import SpeechAccountError, SpeechSourceError
from .speech import SpeechClip, SpeechRequest

__all__ = ["ElevenLabsSource", "RetryPolicy", "decode_mp3"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

_ACCOUNT_STATUSES = frozenset({401, 402, 403})
_ACCOUNT_WORDS = ("quota_exceeded", "invalid_api_key", "payment_required", "unusual_activity")
_VOICE_PAGE_SIZE = 100
_MAX_VOICE_PAGES = 1000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    request_timeout_s: float = 60.0
    clip_deadline_s: float = 300.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Full-jitter backoff before retry number ``attempt`` (1-based)."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        if retry_after is not None:
            return min(self.backoff_max_s, max(retry_after, rng.uniform(0, cap)))
        return rng.uniform(0, cap)


def decode_mp3(data: bytes) -> tuple[Audio, int]:
    """MP3 bytes to float64 mono samples and rate (libsndfile's decoder; module-level job)."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return np.asarray(samples.mean(axis=1), dtype=np.float64), int(rate)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ElevenLabsSource:
    """``SpeechSource`` adapter for ElevenLabs. Use ``async with`` or call ``aclose``."""

    def __init__(
        self,
        api_key: str,
        *,
        pool: ScoringPool,
        model: str = "eleven_multilingual_v2",
        output_format: str = "pcm_44100",
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        base_url: str | None = None,
    ) -> None:
        if not api_key:
            raise SpeechAccountError("no API key (set ELEVENLABS_API_KEY)", source="elevenlabs")
        if output_format != "pcm_44100" and not output_format.startswith("mp3_44100_"):
            raise ValueError(f"unsupported output format {output_format!r}")
        self._pool = pool
        self._model = model
        self._format = output_format
        self._retry = retry or RetryPolicy()
        self._slots = asyncio.Semaphore(concurrency)
        self._jitter = random.Random()
        self._http = httpx.AsyncClient(timeout=self._retry.request_timeout_s)
        kwargs: dict[str, Any] = {
            "api_key": api_key,
            "httpx_client": self._http,
            "timeout": self._retry.request_timeout_s,  # the SDK's own default is 240 s
        }
        if base_url is not None:
            kwargs["base_url"] = base_url
        self._client = AsyncElevenLabs(**kwargs)
        self._voices: tuple[str, ...] | None = None

    @classmethod
    def from_settings(
        cls, settings: DatasetSettings, api_key: str, *, pool: ScoringPool
    ) -> ElevenLabsSource:
        return cls(
            api_key,
            pool=pool,
            model=settings.elevenlabs_model,
            output_format=settings.elevenlabs_output_format,
            concurrency=settings.elevenlabs_concurrency,
            retry=RetryPolicy(
                max_attempts=settings.elevenlabs_max_attempts,
                backoff_base_s=settings.elevenlabs_backoff_base_s,
                backoff_max_s=settings.elevenlabs_backoff_max_s,
                request_timeout_s=settings.elevenlabs_request_timeout_s,
                clip_deadline_s=settings.elevenlabs_clip_deadline_s,
            ),
            base_url=settings.elevenlabs_base_url,
        )

    @property
    def name(self) -> str:
        return "elevenlabs"

    @property
    def speed_range(self) -> tuple[float, float]:
        return (1.0, 1.0)

    async def __aenter__(self) -> ElevenLabsSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def voices(self) -> Sequence[str]:
        if self._voices is None:
            self._voices = await self._with_retries("listing voices", None, self._list_voices)
            if not self._voices:
                raise SpeechSourceError("the account has no voices", source=self.name)
            log.info("elevenlabs.voices", count=len(self._voices))
        return self._voices

    async def _list_voices(self) -> tuple[str, ...]:
        ids: list[str] = []
        token: str | None = None
        for _ in range(_MAX_VOICE_PAGES):
            page = await self._call(
                self._client.voices.search(
                    page_size=_VOICE_PAGE_SIZE,
                    next_page_token=token,
                    request_options={"max_retries": 0},
                )
            )
            ids.extend(v.voice_id for v in page.voices)
            token = page.next_page_token
            if not page.has_more or not token:
                break
        return tuple(sorted(set(ids)))

    async def synthesize(self, request: SpeechRequest) -> SpeechClip:
        async with self._slots:
            data = await self._with_retries(
                "text to speech", request.index, lambda: self._convert(request)
            )
        if self._format == "pcm_44100":
            if len(data) % 2 or not data:
                raise SpeechSourceError(
                    f"bad PCM payload ({len(data)} bytes)", source=self.name, index=request.index
                )
            samples = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
            return SpeechClip(samples, 44100)
        try:
            samples, rate = await self._pool.run(decode_mp3, data)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise SpeechSourceError(
                f"cannot decode MP3: {exc}", source=self.name, index=request.index
            ) from exc
        return SpeechClip(samples, rate)

    async def _convert(self, request: SpeechRequest) -> bytes:
        async def collect() -> bytes:
            chunks = [
                chunk
                async for chunk in self._client.text_to_speech.convert(
                    request.voice,
                    text=request.text,
                    model_id=self._model,
                    output_format=self._format,
                    request_options={"max_retries": 0},
                )
            ]
            return b"".join(chunks)

        return await self._call(collect())

    async def _call(self, aw: Awaitable[T]) -> T:
        """Await one SDK call and classify its failure."""
        try:
            return await aw
        except ApiError as exc:
            raise self._classify(exc) from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed: {exc}") from exc

    def _classify(self, exc: ApiError) -> Exception:
        status = exc.status_code or 0
        detail = str(exc.body)[:300]
        if status in _ACCOUNT_STATUSES or any(w in detail for w in _ACCOUNT_WORDS):
            return SpeechAccountError(
                f"the account cannot be used (HTTP {status}: {detail}); check the API key "
                "and the quota",
                source=self.name,
            )
        if status in (408, 429) or status >= 500:
            return _Retryable(f"HTTP {status}: {detail}", _retry_after(exc.headers))
        return SpeechSourceError(f"HTTP {status}: {detail}", source=self.name)

    async def _with_retries(
        self, what: str, index: int | None, call: Callable[[], Awaitable[T]]
    ) -> T:
        policy = self._retry
        last = ""
        attempt = 0
        try:
            async with asyncio.timeout(policy.clip_deadline_s):
                while True:
                    attempt += 1
                    try:
                        return await call()
                    except _Retryable as exc:
                        last = str(exc)
                        if attempt >= policy.max_attempts:
                            break
                        delay = policy.delay(attempt, self._jitter, exc.retry_after)
                        log.warning(
                            "elevenlabs.retry", what=what, index=index, attempt=attempt,
                            delay_s=round(delay, 3), error=last,
                        )  # fmt: skip
                        await asyncio.sleep(delay)
        except TimeoutError:
            raise SpeechSourceError(
                f"{what}: no answer within {policy.clip_deadline_s} s ({attempt} attempts; "
                f"last error: {last or 'none'})",
                source=self.name,
                index=index,
            ) from None
        raise SpeechSourceError(
            f"{what}: gave up after {attempt} attempts; last error: {last}",
            source=self.name,
            index=index,
        )


def _retry_after(headers: dict[str, str] | None) -> float | None:
    if not headers:
        return None
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
