"""The per-file pool job: clean speech in, clean + degraded WAV files and a manifest row out."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...competitions import Task
from ._types import Audio
from .band import band_limit, speech_band
from .constants import MIN_CLIP_S
from .manifest import FileEntry
from .mixing import loudness, mix_at_snr, normalize_clean, resample, reverberate, to_wav_bytes
from .sources import NoisePlan, RirPlan

__all__ = ["ClipRejected", "PairJob", "check_clip", "render_pair"]


class ClipRejected(Exception):
    """The speech clip is unusable (silent, or shorter than ``MIN_CLIP_S``): draw another."""


def check_clip(speech: Audio, speech_rate: int) -> None:
    """Raise ``ClipRejected`` for a clip that is too short or silent (loudness ``-inf``)."""
    seconds = speech.size / speech_rate
    if seconds < MIN_CLIP_S:
        raise ClipRejected(f"clip is {seconds:.2f} s, shorter than {MIN_CLIP_S} s")
    if not np.all(np.isfinite(speech)):
        raise ClipRejected("clip is not finite")
    if not math.isfinite(loudness(speech, speech_rate)):
        raise ClipRejected("clip is silent")


@dataclass(frozen=True, slots=True)
class PairJob:
    """Everything drawn from the seed for one file (picklable, sent to a worker)."""

    name: str
    task: Task
    sample_rate: int
    text: str
    voice: str
    speed: float
    snr_db: float | None = None
    noise: NoisePlan | None = None
    rir: RirPlan | None = None


def render_pair(
    job: PairJob, speech: Audio, speech_rate: int, root: str, redraws: tuple[str, ...] = ()
) -> FileEntry:
    """Check, resample, band-limit and normalise the speech, degrade it with noise limited to
    the same band (or a room), write both 16-bit WAVs under ``root``.

    Raises ``ClipRejected`` for an unusable clip (the caller draws another voice).
    """
    sr = job.sample_rate
    check_clip(speech, speech_rate)
    band = speech_band(speech_rate, sr)
    clean = normalize_clean(band_limit(resample(speech, speech_rate, sr), sr, band), sr)
    snr: float | None = None
    noise_id = rir_id = None
    rt60: float | None = None
    if job.task is Task.DENOISING:
        if job.noise is None or job.snr_db is None:
            raise ValueError("a denoising job needs a noise plan and an SNR")
        noise, noise_id = job.noise.render(clean.size, sr)
        noise = band_limit(noise, sr, band)
        clean, degraded, snr = mix_at_snr(clean, noise, job.snr_db, sr)
    else:
        if job.rir is None:
            raise ValueError("a dereverberation job needs an RIR plan")
        rir, rt60, rir_id = job.rir.render(sr)
        clean, degraded = reverberate(clean, rir, sr)
    clean_bytes, degraded_bytes = to_wav_bytes(clean, sr), to_wav_bytes(degraded, sr)
    (Path(root) / "clean" / job.name).write_bytes(clean_bytes)
    (Path(root) / "degraded" / job.name).write_bytes(degraded_bytes)
    return FileEntry(
        name=job.name,
        text=job.text,
        voice=job.voice,
        speed=round(job.speed, 4),
        duration_s=round(clean.size / sr, 4),
        clean_sha256=hashlib.sha256(clean_bytes).hexdigest(),
        degraded_sha256=hashlib.sha256(degraded_bytes).hexdigest(),
        snr_db=round(snr, 4) if snr is not None else None,
        noise=noise_id,
        rir=rir_id,
        rt60_s=round(rt60, 4) if rt60 is not None else None,
        redraws=redraws,
    )
