"""The planner: every random choice of a dataset, drawn up front from one seeded RNG.

The RNG is ``random.Random`` seeded with a digest of (competition, seed), so the four
competitions of one epoch get different prompts, and seed 0 is a seed like any other. Per file,
in order: voice, prompt, speed (if the source has speed control), then the SNR and the noise plan
(denoising) or the RIR plan (dereverberation). Files are named ``0000.wav``, ``0001.wav``, ...
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import replace

from ...competitions import Competition, Task
from .constants import SENTENCES_PER_PROMPT, SNR_MAX_DB, SNR_MIN_DB
from .render import PairJob
from .sentences import Prompter
from .sources import NoiseSource, RirSource

__all__ = ["derive_seed", "file_name", "plan_dataset"]


def derive_seed(competition: Competition, seed: int) -> int:
    digest = hashlib.sha256(f"soundsright-dataset/{competition.name}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def file_name(index: int, count: int) -> str:
    return f"{index:0{max(4, len(str(count - 1)))}d}.wav"


def plan_dataset(
    competition: Competition,
    seed: int,
    count: int,
    *,
    voices: Sequence[str],
    speed_range: tuple[float, float],
    noise: NoiseSource | None,
    rir: RirSource | None,
    sentences: int = SENTENCES_PER_PROMPT,
) -> list[PairJob]:
    """The jobs for ``count`` files; a pure function of its arguments."""
    if count < 1:
        raise ValueError("count must be >= 1")
    if not voices:
        raise ValueError("the speech source offers no voices")
    rng = random.Random(derive_seed(competition, seed))
    prompter = Prompter(rng, sentences)
    lo, hi = speed_range
    jobs = []
    for i in range(count):
        voice = rng.choice(list(voices))
        text = prompter.prompt().strip()
        speed = rng.uniform(lo, hi) if hi > lo else lo
        job = PairJob(
            file_name(i, count), competition.task, competition.sample_rate, text, voice, speed
        )
        if competition.task is Task.DENOISING:
            if noise is None:
                raise ValueError("denoising needs a noise source")
            snr = rng.uniform(SNR_MIN_DB, SNR_MAX_DB)
            job = replace(job, snr_db=snr, noise=noise.plan(rng))
        else:
            if rir is None:
                raise ValueError("dereverberation needs an RIR source")
            job = replace(job, rir=rir.plan(rng))
        jobs.append(job)
    return jobs
