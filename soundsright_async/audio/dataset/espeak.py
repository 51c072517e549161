"""The offline ``espeak`` speech source: espeak-ng via ctypes, from the ``espeakng-loader`` wheel.

The wheel bundles ``libespeak-ng.so`` and its voice data, so nothing is installed system-wide.
The library runs in synchronous mode: ``espeak_Synth`` returns once every sample has gone through
our callback. espeak-ng keeps synthesiser state in C globals across utterances (even across
``espeak_Terminate``), so the same text gives slightly different audio depending on what was
spoken before. To make a clip depend only on its inputs, each clip is synthesised in a short-lived
``fork`` of the pool worker that has never spoken (about 10 ms of overhead per clip).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..pool import ScoringPool
from ._types import Audio
from .errors import SpeechSourceError
from .speech import SpeechClip, SpeechRequest

__all__ = ["ESPEAK_SPEEDS", "ESPEAK_VOICES", "EspeakSource", "espeak_synthesize"]

#: English voices (language, optionally ``+variant``) that the seed draws from.
ESPEAK_VOICES: tuple[str, ...] = (
    "en-us",
    "en-us+f2",
    "en-us+m3",
    "en-us+f4",
    "en-gb-x-rp",
    "en-gb-x-rp+f3",
    "en-gb-scotland",
    "en-gb-x-gbclan+m2",
    "en-029",
    "en-us-nyc+f1",
)
ESPEAK_SPEEDS = (0.85, 1.15)
_WPM_NORMAL = 165
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _synth_here(text: str, voice: str, wpm: int, pitch: int) -> tuple[npt.NDArray[np.int16], int]:
    """Initialise espeak-ng in this process and synthesise one utterance."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    data = espeakng_loader.get_data_path().encode()
    rate = int(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0))
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate})")
    chunks: list[npt.NDArray[np.int16]] = []

    def collect(wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
        if n > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(collect)  # referenced until the end of this function
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ValueError(f"espeak-ng has no voice {voice!r}")
    lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
    lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
    lib.espeak_ng_SetRandSeed(1)
    raw = text.encode("utf-8") + b"\0"
    err = lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if err != 0:
        raise RuntimeError(f"espeak_Synth failed ({err})")
    lib.espeak_Synchronize()
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return pcm, rate


def _synth_in_fork(text: str, voice: str, wpm: int, pitch: int) -> tuple[bytes, int]:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which leaves through os._exit
        code = 1
        try:
            os.close(rfd)
            try:
                pcm, rate = _synth_here(text, voice, wpm, pitch)
                payload = rate.to_bytes(4, "little") + pcm.tobytes()
                code = 0
            except ValueError:
                payload, code = b"", 3
            with os.fdopen(wfd, "wb") as out:
                out.write(payload)
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as inp:
        payload = inp.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 3:
        raise ValueError(f"espeak-ng has no voice {voice!r}")
    if code != 0 or len(payload) < 4:
        raise RuntimeError(f"espeak-ng synthesis failed (exit status {code})")
    return payload[4:], int.from_bytes(payload[:4], "little")


def espeak_synthesize(
    text: str, voice: str, speed: float = 1.0, pitch: int = 50
) -> tuple[Audio, int]:
    """Synthesise ``text``: float64 mono samples in [-1, 1] and espeak-ng's rate (22050 Hz).

    ``speed`` scales the normal rate (1.0 = 165 words per minute). Deterministic: the same
    arguments give the same samples. Module-level, so the process pool can run it.
    """
    pcm, rate = _synth_in_fork(text, voice, round(_WPM_NORMAL * speed), pitch)
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64) / 32768.0
    if samples.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for voice {voice!r}")
    return samples, rate


class EspeakSource:
    """``SpeechSource`` adapter for espeak-ng; synthesis runs in ``pool``'s worker processes."""

    def __init__(self, pool: ScoringPool, voices: Sequence[str] = ESPEAK_VOICES) -> None:
        self._pool = pool
        self._voices = tuple(voices)

    @property
    def name(self) -> str:
        return "espeak"

    @property
    def speed_range(self) -> tuple[float, float]:
        return ESPEAK_SPEEDS

    async def voices(self) -> Sequence[str]:
        return self._voices

    async def synthesize(self, request: SpeechRequest) -> SpeechClip:
        try:
            samples, rate = await self._pool.run(
                espeak_synthesize, request.text, request.voice, request.speed
            )
        except (RuntimeError, ValueError) as exc:  # no audio, unknown voice: redraw the clip
            raise SpeechSourceError(str(exc), source=self.name, index=request.index) from exc
        return SpeechClip(samples=samples, sample_rate=rate)
