"""A local HTTP server that speaks the subset of the ElevenLabs API the SDK's async client calls
(``GET /v2/voices`` with page tokens, ``POST /v1/text-to-speech/{voice_id}``), for tests,
benchmarks and offline demos. Bind it to 127.0.0.1 and pass its ``base_url`` to the source.

    async with FakeElevenLabs(latency_s=0.3, script=[429, "ok"]) as fake:
        source = ElevenLabsSource("test-key", base_url=fake.base_url, pool=pool)

``script`` is consumed one item per TTS request: an HTTP status to answer with (429, 500, ...),
``"quota"`` (401 ``quota_exceeded``, as ElevenLabs answers), ``"hang"`` (never answers),
``"short"`` (a 0.2 s clip), ``"silent"`` (a clip of digital silence) or ``"ok"``; when it is
empty, ``default`` applies.
"""

from __future__ import annotations

import asyncio
import io
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import soundfile as sf
from aiohttp import web

__all__ = ["FakeElevenLabs"]

Step = int | str


class FakeElevenLabs:
    def __init__(
        self,
        *,
        api_key: str = "test-key",
        voices: Iterable[str] = ("voice-c", "voice-a", "voice-b"),
        page_size: int = 2,
        latency_s: float = 0.0,
        clip_seconds: float = 1.0,
        script: Iterable[Step] = (),
        default: Step = "ok",
    ) -> None:
        self.api_key = api_key
        self.voices = list(voices)
        self.page_size = page_size
        self.latency_s = latency_s
        self.clip_seconds = clip_seconds
        self.script: deque[Step] = deque(script)
        self.default = default
        self.tts_requests: list[dict[str, Any]] = []
        self.voice_requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.base_url = ""

    async def __aenter__(self) -> FakeElevenLabs:
        app = web.Application()
        app.router.add_get("/v2/voices", self._voices)
        app.router.add_post("/v1/text-to-speech/{voice_id}", self._tts)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("xi-api-key") != self.api_key:
            return web.json_response(
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
                status=401,
            )
        return None

    async def _voices(self, request: web.Request) -> web.Response:
        self.voice_requests += 1
        if (denied := self._auth(request)) is not None:
            return denied
        size = min(int(request.query.get("page_size", "10")), self.page_size)
        start = int(request.query.get("next_page_token") or 0)
        page = self.voices[start : start + size]
        more = start + size < len(self.voices)
        return web.json_response(
            {
                "voices": [{"voice_id": v, "name": v.title()} for v in page],
                "has_more": more,
                "total_count": len(self.voices),
                "next_page_token": str(start + size) if more else None,
            }
        )

    async def _tts(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()
            fmt = request.query.get("output_format", "mp3_44100_128")
            self.tts_requests.append(
                {"voice": request.match_info["voice_id"], "format": fmt, **body}
            )
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if (denied := self._auth(request)) is not None:
                return denied
            step = self.script.popleft() if self.script else self.default
            if step == "hang":  # until the client gives up or the server stops
                await self._closing.wait()
                return web.json_response({"detail": {"status": "shutting_down"}}, status=503)
            if step == "quota":
                return web.json_response(
                    {
                        "detail": {
                            "status": "quota_exceeded",
                            "message": "This request exceeds your quota.",
                        }
                    },
                    status=401,
                )
            if isinstance(step, int):
                return web.json_response({"detail": {"status": f"error_{step}"}}, status=step)
            seconds = 0.2 if step == "short" else self.clip_seconds
            audio = self._audio(str(body["text"]), fmt, seconds, silent=step == "silent")
            return web.Response(body=audio)
        finally:
            self.in_flight -= 1

    def _audio(self, text: str, fmt: str, seconds: float, *, silent: bool = False) -> bytes:
        rate = 44100
        t = np.arange(int(seconds * rate)) / rate
        f0 = 120 + (sum(text.encode()) % 80)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
        x = 0.3 * x / np.max(np.abs(x)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        if silent:
            x = np.zeros_like(t)
        if fmt.startswith("pcm_"):
            return bytes((x * 32767).astype("<i2").tobytes())
        buf = io.BytesIO()
        sf.write(buf, x, rate, format="MP3")
        return buf.getvalue()
