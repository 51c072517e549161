"""Which example model each demo miner serves, in which competition (pure), and where the example
model sources are: package data in an installed wheel (``soundsright_async/_examples/models``,
mapped from ``examples/models`` at build time), else the source checkout's ``examples/models``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..competitions import COMPETITIONS
from ._weights import DemoError

__all__ = ["Entry", "check_competitions", "examples_dir", "roster"]

# (short name, example directory, preferred competition). The first four are the default demo:
# the neural denoiser at 48 kHz, the three classic examples at 16 kHz; more miners add contests.
_ROSTER = (
    ("dfn", "deepfilternet", "DENOISING_48000HZ"),
    ("gate", "spectral-gate", "DENOISING_16000HZ"),
    ("pass", "passthrough", "DENOISING_16000HZ"),
    ("dereverb", "dereverb", "DEREVERBERATION_16000HZ"),
    ("gate48", "spectral-gate", "DENOISING_48000HZ"),
    ("dfn16", "deepfilternet", "DENOISING_16000HZ"),
)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # wallet name and git namespace
    example: str
    competition: str
    variant: int  # > 0: a NOTICE file makes the repo's content differ from the earlier copies

    @property
    def notice(self) -> dict[str, bytes]:
        return {"NOTICE": f"demo variant {self.variant}\n".encode()} if self.variant else {}


def roster(count: int, competitions: list[str]) -> list[Entry]:
    """``count`` miners over the roster (cycled); a miner whose preferred competition is not run
    enters the first of ``competitions``."""
    if count < 1:
        raise DemoError("--miners must be at least 1")
    if not competitions:
        raise DemoError("--competitions needs at least one competition")
    out: list[Entry] = []
    seen: dict[str, int] = {}
    for i in range(count):
        short, example, preferred = _ROSTER[i % len(_ROSTER)]
        comp = preferred if preferred in competitions else competitions[0]
        variant = seen.get(example, 0)  # later copies differ in content (a NOTICE file)
        seen[example] = variant + 1
        out.append(Entry(f"miner{i + 1}-{short}", example, comp, variant))
    return out


def check_competitions(names: list[str]) -> list[str]:
    known = {c.name for c in COMPETITIONS}
    bad = [n for n in names if n not in known]
    if bad:
        raise DemoError(f"unknown competition {bad[0]!r}; choose from {', '.join(sorted(known))}")
    return list(dict.fromkeys(names))


def examples_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_examples" / "models", here.parent / "examples" / "models"):
        if (candidate / "spectral-gate" / "Dockerfile").is_file():
            return candidate
    raise DemoError("the example models are missing (neither packaged nor in a checkout)")
