"""The corpus sources: WHAM! noise (``wham``) and Arni room impulse responses (``arni``).

Both download their archives once into ``DATA_DIR/corpora/<name>/`` (see ``download.py``) and
keep an index of usable files there, so ``prepare`` is cheap after the first run and a half
finished download or extraction is resumed or redone, never mistaken for a complete one.

* WHAM!: a plan is (file, offset fraction); the worker reads the file, mixes it to mono,
  resamples it and takes a segment of the clean length (tiled when the file is shorter).
* Arni: every channel of every RIR is cut at its direct-path peak and its RT60 measured at the
  file's own rate when the index is built; only channels with RT60 <= 2.0 s are ever drawn.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import soundfile as sf
import structlog

from ...config import DatasetSettings
from ..pool import ScoringPool
from ._types import Audio
from .constants import MAX_REDRAWS, MAX_RT60_S
from .download import Archive, extract_wavs, fetch_archive
from .errors import CorpusError
from .mixing import fit_length, loudness, resample, rt60, trim_rir

__all__ = ["ArniRir", "ArniSource", "WhamNoise", "WhamSource", "measure_rir_file"]

log = structlog.get_logger(__name__)

_INDEX = "index.json"


@dataclass(frozen=True, slots=True)
class WhamNoise:
    """A planned WHAM! segment. ``alternates`` are the files tried, in order, when a segment is
    silent (the next files of the sorted corpus, each at a shifted offset)."""

    path: str
    offset_fraction: float
    alternates: tuple[str, ...] = ()

    def render(self, n: int, sample_rate: int) -> tuple[Audio, str]:
        rejected: list[str] = []
        for k, path in enumerate((self.path, *self.alternates)):
            fraction = (self.offset_fraction + k * _GOLDEN) % 1.0
            noise, desc = _wham_segment(path, fraction, n, sample_rate)
            if _audible(noise, sample_rate):
                if rejected:
                    desc += f" (redrawn after silent {', '.join(rejected)})"
                return noise, desc
            rejected.append(desc.removeprefix("wham:"))
        raise ValueError(f"every WHAM! segment drawn is silent: {', '.join(rejected)}")


_GOLDEN = 0.6180339887498949


def _wham_segment(path: str, fraction: float, n: int, sample_rate: int) -> tuple[Audio, str]:
    info = sf.info(path)
    native = int(info.samplerate)
    need = math.ceil(n * native / sample_rate) + 16
    start = int(fraction * max(0, info.frames - need))
    data, _ = sf.read(path, start=start, frames=need, dtype="float64", always_2d=True)
    noise = resample(data.mean(axis=1), native, sample_rate)
    return fit_length(noise, n), f"wham:{Path(path).name}@{start}"


def _audible(x: Audio, sample_rate: int) -> bool:
    if x.size < int(0.4 * sample_rate):
        return bool(np.any(x != 0))
    return math.isfinite(loudness(x, sample_rate))


@dataclass(frozen=True, slots=True)
class ArniRir:
    path: str
    channel: int
    rt60_s: float

    def render(self, sample_rate: int) -> tuple[Audio, float, str]:
        data, native = sf.read(self.path, dtype="float64", always_2d=True)
        h = trim_rir(data[:, self.channel])
        return (
            resample(h, int(native), sample_rate),
            self.rt60_s,
            (f"arni:{Path(self.path).name}#{self.channel}"),
        )


def measure_rir_file(path: str) -> list[tuple[int, float]]:
    """(channel, RT60 at the file's own rate) for each channel; ``inf`` when unmeasurable."""
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    out = []
    for ch in range(data.shape[1]):
        try:
            out.append((ch, rt60(trim_rir(data[:, ch]), int(rate))))
        except ValueError:
            out.append((ch, math.inf))
    return out


class _Corpus:
    """Download + extract + index, shared by both sources."""

    def __init__(
        self,
        name: str,
        archives: Sequence[Archive],
        root: Path,
        *,
        pool: ScoringPool,
        max_bytes: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.corpus = name
        self.archives = tuple(archives)
        self.dir = Path(root) / name
        self.pool = pool
        self.max_bytes = max_bytes
        self._session = session
        self._lock = asyncio.Lock()

    async def _ensure_files(self) -> list[Path]:
        """Download and extract every archive (idempotent); the extracted wav paths."""
        files: list[Path] = []
        session = self._session or aiohttp.ClientSession()
        try:
            for archive in self.archives:
                extracted = self.dir / (archive.filename + ".d")
                if not extracted.is_dir():
                    zpath = await fetch_archive(
                        archive, self.dir / "downloads", session=session, max_bytes=self.max_bytes
                    )
                    names = await asyncio.to_thread(
                        extract_wavs, zpath, extracted, max_bytes=self.max_bytes
                    )
                    # extract_wavs checked every member's size and CRC: the zip can go
                    await asyncio.to_thread(zpath.unlink)
                    log.info(
                        "corpus.extracted", corpus=self.corpus, files=len(names), removed=zpath.name
                    )
                files.extend(sorted(p for p in extracted.iterdir() if p.suffix.lower() == ".wav"))
        finally:
            if self._session is None:
                await session.close()
        if not files:
            raise CorpusError(f"{self.corpus}: the archives contain no .wav files")
        return files

    async def _load_index(self, build: type[_IndexBuilder]) -> list[dict[str, object]]:
        index = self.dir / _INDEX
        if index.exists():
            raw = await asyncio.to_thread(index.read_bytes)
            data: list[dict[str, object]] = orjson.loads(raw)
            return data
        files = await self._ensure_files()
        entries = await build.run(self.pool, files)
        tmp = index.with_name(index.name + ".tmp")
        await asyncio.to_thread(tmp.write_bytes, orjson.dumps(entries))
        tmp.replace(index)
        return entries


class _IndexBuilder:
    @staticmethod
    async def run(pool: ScoringPool, files: list[Path]) -> list[dict[str, object]]:
        raise NotImplementedError


class _WhamIndex(_IndexBuilder):
    @staticmethod
    async def run(pool: ScoringPool, files: list[Path]) -> list[dict[str, object]]:
        def info(path: Path) -> dict[str, object]:
            i = sf.info(str(path))
            return {"file": path.name, "frames": int(i.frames), "rate": int(i.samplerate)}

        out = [await asyncio.to_thread(info, p) for p in files]
        return [e for e in out if isinstance(e["frames"], int) and e["frames"] > 0]


class _ArniIndex(_IndexBuilder):
    @staticmethod
    async def run(pool: ScoringPool, files: list[Path]) -> list[dict[str, object]]:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(pool.run(measure_rir_file, str(p))) for p in files]
        out: list[dict[str, object]] = []
        for path, task in zip(files, tasks, strict=True):
            for ch, value in task.result():
                out.append({"file": path.name, "channel": ch, "rt60_s": value})
        return out


class WhamSource(_Corpus):
    """``NoiseSource`` over the WHAM! 48 kHz noise corpus."""

    def __init__(
        self,
        archives: Sequence[Archive],
        root: Path,
        *,
        pool: ScoringPool,
        max_bytes: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__("wham", archives, root, pool=pool, max_bytes=max_bytes, session=session)
        self._files: list[str] | None = None

    @classmethod
    def from_settings(
        cls, settings: DatasetSettings, root: Path, *, pool: ScoringPool
    ) -> WhamSource:
        archive = Archive(settings.wham_url, settings.wham_sha256, settings.wham_size_bytes)
        return cls([archive], root, pool=pool, max_bytes=settings.corpus_max_bytes)

    @property
    def name(self) -> str:
        return "wham"

    async def prepare(self) -> None:
        async with self._lock:
            if self._files is None:
                entries = await self._load_index(_WhamIndex)
                self._files = sorted(self._path_of(str(e["file"])) for e in entries)
                if not self._files:
                    raise CorpusError("wham: no usable noise files")

    def _path_of(self, name: str) -> str:
        for archive in self.archives:
            candidate = self.dir / (archive.filename + ".d") / name
            if candidate.exists():
                return str(candidate)
        raise CorpusError(f"wham: indexed file {name} is missing; delete {self.dir / _INDEX}")

    def plan(self, rng: random.Random) -> WhamNoise:
        if self._files is None:
            raise RuntimeError("call prepare() first")
        path = rng.choice(self._files)
        at = self._files.index(path)
        alternates = tuple(
            self._files[(at + k) % len(self._files)] for k in range(1, MAX_REDRAWS + 1)
        )
        return WhamNoise(path, rng.random(), alternates)


class ArniSource(_Corpus):
    """``RirSource`` over the Arni RIR corpus (only channels with RT60 <= 2.0 s are drawn)."""

    def __init__(
        self,
        archives: Sequence[Archive],
        root: Path,
        *,
        pool: ScoringPool,
        max_bytes: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__("arni", archives, root, pool=pool, max_bytes=max_bytes, session=session)
        self._rirs: list[tuple[str, int, float]] | None = None

    @classmethod
    def from_settings(
        cls, settings: DatasetSettings, root: Path, *, pool: ScoringPool
    ) -> ArniSource:
        shas = settings.arni_sha256 or [""] * len(settings.arni_urls)
        sizes = settings.arni_size_bytes or [0] * len(settings.arni_urls)
        archives = [
            Archive(u, s, n) for u, s, n in zip(settings.arni_urls, shas, sizes, strict=True)
        ]
        return cls(archives, root, pool=pool, max_bytes=settings.corpus_max_bytes)

    @property
    def name(self) -> str:
        return "arni"

    async def prepare(self) -> None:
        async with self._lock:
            if self._rirs is None:
                entries = await self._load_index(_ArniIndex)
                rirs = []
                for e in entries:
                    value = float(str(e["rt60_s"]))
                    if math.isfinite(value) and value <= MAX_RT60_S:
                        channel = e["channel"]
                        assert isinstance(channel, int)
                        rirs.append((self._path_of(str(e["file"])), channel, value))
                if not rirs:
                    raise CorpusError(f"arni: no RIR with RT60 <= {MAX_RT60_S} s")
                self._rirs = sorted(rirs)
                log.info("corpus.arni", usable=len(rirs), indexed=len(entries))

    def _path_of(self, name: str) -> str:
        for archive in self.archives:
            candidate = self.dir / (archive.filename + ".d") / name
            if candidate.exists():
                return str(candidate)
        raise CorpusError(f"arni: indexed file {name} is missing; delete {self.dir / _INDEX}")

    def plan(self, rng: random.Random) -> ArniRir:
        if self._rirs is None:
            raise RuntimeError("call prepare() first")
        path, channel, value = rng.choice(self._rirs)
        return ArniRir(path, channel, value)

    @property
    def usable(self) -> int:
        return len(self._rirs or ())
