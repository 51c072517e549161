"""``manifest.json``: what a dataset contains and how each file was made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "FileEntry", "Manifest"]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One clean/degraded pair. ``snr_db`` is set for denoising, ``rir``/``rt60_s`` for
    dereverberation; ``noise`` names the noise (source, seed or file, components)."""

    name: str
    text: str
    voice: str
    speed: float
    duration_s: float
    clean_sha256: str
    degraded_sha256: str
    snr_db: float | None = None
    noise: str | None = None
    rir: str | None = None
    rt60_s: float | None = None
    redraws: tuple[str, ...] = ()
    """Why earlier draws for this file were rejected (``voice X: clip is silent``), in order."""


@dataclass(frozen=True, slots=True)
class Manifest:
    competition: str
    sample_rate: int
    task: str
    seed: int
    count: int
    sources: dict[str, str]
    files: tuple[FileEntry, ...] = field(default_factory=tuple)
    version: int = MANIFEST_VERSION

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys, indented): the same dataset gives the same manifest."""
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        data: dict[str, Any] = orjson.loads(raw)
        files = tuple(
            FileEntry(**{**f, "redraws": tuple(f.get("redraws", ()))}) for f in data.pop("files")
        )
        return cls(files=files, **data)

    def summary(self) -> dict[str, Any]:
        """Counts, total duration and the SNR / RT60 ranges, for the CLI."""
        out: dict[str, Any] = {
            "competition": self.competition,
            "seed": self.seed,
            "files": len(self.files),
            "sources": self.sources,
            "total_duration_s": round(sum(f.duration_s for f in self.files), 2),
        }
        snrs = [f.snr_db for f in self.files if f.snr_db is not None]
        rts = [f.rt60_s for f in self.files if f.rt60_s is not None]
        if snrs:
            out["snr_db"] = {"min": round(min(snrs), 2), "max": round(max(snrs), 2)}
        if rts:
            out["rt60_s"] = {"min": round(min(rts), 3), "max": round(max(rts), 3)}
        return out
