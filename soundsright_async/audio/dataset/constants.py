"""Fixed numbers of the dataset pipeline (the reference's values unless noted)."""

from __future__ import annotations

__all__ = [
    "CLEAN_LOUDNESS_LUFS",
    "CLEAN_MAX_PEAK",
    "FADE_MS",
    "MAX_REDRAWS",
    "MAX_RT60_S",
    "MIN_CLIP_S",
    "MIN_RT60_S",
    "PEAK_LIMIT",
    "RT60_TOLERANCE",
    "SENTENCES_PER_PROMPT",
    "SNR_MAX_DB",
    "SNR_MIN_DB",
    "SNR_STEP_DB",
]

SNR_MIN_DB = -2.5
SNR_MAX_DB = 17.5
SNR_STEP_DB = 1.0
"""The SNR rises by this much until the mixture's peak is below ``PEAK_LIMIT``."""
PEAK_LIMIT = 1.0
FADE_MS = 10.0
MIN_RT60_S = 0.2
MAX_RT60_S = 2.0
SENTENCES_PER_PROMPT = 4
CLEAN_LOUDNESS_LUFS = -27.0
"""Ours, not the reference's: clean speech is loudness-normalised first, so every mix can reach
a peak below 1 (the reference loops forever on clean speech that peaks at 1)."""
CLEAN_MAX_PEAK = 0.5
"""Ours: clean speech louder than this peak is scaled down to it."""
MIN_CLIP_S = 0.4
"""A speech clip shorter than this (the loudness meter's block) is redrawn."""
MAX_REDRAWS = 3
"""A failed, silent or too short clip (or noise segment) is redrawn at most this many times."""
RT60_TOLERANCE = 0.2
"""A synthetic room's measured RT60 is within this fraction of its target."""
