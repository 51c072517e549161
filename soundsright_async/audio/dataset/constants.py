"""Fixed numbers of the dataset pipeline (the reference's values unless noted)."""

from __future__ import annotations

__all__ = [
    "CLEAN_LOUDNESS_LUFS",
    "CLEAN_MAX_PEAK",
    "FADE_MS",
    "MAX_RT60_S",
    "MIN_RT60_S",
    "PEAK_LIMIT",
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
