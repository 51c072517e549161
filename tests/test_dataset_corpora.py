"""WHAM! / Arni corpus sources: resumable verified downloads from a local server, safe
extraction, segment and RIR selection, generation from the corpora."""

from __future__ import annotations

import asyncio
import hashlib
import io
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from soundsright_async.audio.dataset import CorpusError, DatasetSpec, Sources, generate_dataset
from soundsright_async.audio.dataset.corpora import ArniSource, WhamSource
from soundsright_async.audio.dataset.download import Archive, extract_wavs, fetch_archive
from soundsright_async.audio.dataset.espeak import EspeakSource
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import get_competition

CAP = 50 * 2**20


def _wav_bytes(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _decay(t60: float, rate: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    h = 0.3 * rng.standard_normal(t.size) * 10 ** (-3 * t / t60)
    return np.concatenate([np.zeros(200), [0.9], h])


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _wham_zip() -> bytes:
    rng = np.random.default_rng(1)
    return _zip(
        {
            "high_res_wham/audio/cafe.wav": _wav_bytes(
                0.2 * rng.standard_normal((96000, 2)), 48000
            ),
            "high_res_wham/audio/street.wav": _wav_bytes(0.1 * rng.standard_normal(30000), 48000),
            "high_res_wham/audio/SILENT.WAV": _wav_bytes(np.zeros(96000), 48000),
            "high_res_wham/README.txt": b"not audio",
        }
    )


def _arni_zip() -> bytes:
    two = np.stack([_decay(0.4, 44100, 1.0, 2), _decay(3.0, 44100, 4.0, 3)[:44301]], axis=1)
    return _zip(
        {
            "IR_Arni/mic1/rir_a.wav": _wav_bytes(two, 44100),
            "IR_Arni/mic2/rir_a.wav": _wav_bytes(_decay(1.0, 44100, 2.0, 4), 44100),
        }
    )


class Server:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut_next: set[str] = set()
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((name, request.headers.get("Range")))
        data = self.files.get(name)
        if data is None:
            return web.Response(status=404)
        if name in self.cut_next:  # send half of the body, then drop the connection
            self.cut_next.discard(name)
            resp = web.StreamResponse()
            resp.content_length = len(data)
            await resp.prepare(request)
            for i in range(0, len(data) // 2, 10_000):
                await resp.write(data[i : i + 10_000])
                await asyncio.sleep(0.02)
            assert request.transport is not None
            request.transport.close()
            return resp
        start = 0
        if rng := request.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            return web.Response(
                status=206,
                body=data[start:],
                headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
            )
        return web.Response(body=data)

    def url(self, name: str) -> str:
        return f"{self.base}/files/{name}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server({"wham.zip": _wham_zip(), "arni.zip": _arni_zip(), "blob.bin": b"x" * 100_000})
    app = web.Application()
    app.router.add_get("/files/{name}", srv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield srv
    await runner.cleanup()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_download_resumes_after_a_cut_connection(server: Server, tmp_path: Path) -> None:
    data = server.files["blob.bin"]
    server.cut_next.add("blob.bin")
    archive = Archive(server.url("blob.bin"), _sha(data), len(data))
    async with aiohttp.ClientSession() as session:
        path = await fetch_archive(
            archive, tmp_path, session=session, max_bytes=CAP, backoff_s=0.01
        )
        assert _read(path) == data
        assert [r[0] for r in server.requests] == ["blob.bin", "blob.bin"]
        resumed_at = int((server.requests[-1][1] or "bytes=0-")[6:-1])
        assert 0 < resumed_at <= len(data) // 2  # what arrived before the cut was kept
        assert _read(path.with_name("blob.bin.sha256")).decode().strip() == _sha(data)
        before = len(server.requests)
        await fetch_archive(archive, tmp_path, session=session, max_bytes=CAP)
        assert len(server.requests) == before  # verified file: not fetched again


async def test_download_resumes_an_existing_part_file(server: Server, tmp_path: Path) -> None:
    data = server.files["blob.bin"]
    _write(tmp_path / "blob.bin.part", data[:1234])
    async with aiohttp.ClientSession() as session:
        path = await fetch_archive(
            Archive(server.url("blob.bin"), _sha(data)), tmp_path, session=session, max_bytes=CAP
        )
    assert _read(path) == data
    assert server.requests == [("blob.bin", "bytes=1234-")]


async def test_download_checks_sha256_size_and_cap(server: Server, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CorpusError, match="sha256 mismatch"):
            await fetch_archive(
                Archive(server.url("blob.bin"), "0" * 64), tmp_path, session=session, max_bytes=CAP
            )
        with pytest.raises(CorpusError, match="exceeds the cap"):
            await fetch_archive(
                Archive(server.url("blob.bin")), tmp_path, session=session, max_bytes=1000
            )
        with pytest.raises(CorpusError, match="server size"):
            await fetch_archive(
                Archive(server.url("blob.bin"), size=5), tmp_path, session=session, max_bytes=CAP
            )
        with pytest.raises(CorpusError, match="HTTP 404"):
            await fetch_archive(
                Archive(server.url("missing.zip")), tmp_path, session=session, max_bytes=CAP
            )
    assert _names(tmp_path) == []


def test_extraction_refuses_unsafe_members(tmp_path: Path) -> None:
    for name in ("../evil.wav", "/abs/evil.wav", "a/../../evil.wav"):
        zpath = tmp_path / "bad.zip"
        zpath.write_bytes(_zip({name: b"RIFF"}))
        with pytest.raises(CorpusError, match="unsafe path"):
            extract_wavs(zpath, tmp_path / "out", max_bytes=CAP)
        assert not (tmp_path / "out").exists()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link.wav")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    (tmp_path / "link.zip").write_bytes(buf.getvalue())
    with pytest.raises(CorpusError, match="symlink"):
        extract_wavs(tmp_path / "link.zip", tmp_path / "out", max_bytes=CAP)
    (tmp_path / "big.zip").write_bytes(_zip({"a.wav": b"x" * 5000}))
    with pytest.raises(CorpusError, match="exceeds"):
        extract_wavs(tmp_path / "big.zip", tmp_path / "out", max_bytes=1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "big.zip", "link.zip"]


def test_extraction_flattens_names_without_collisions(tmp_path: Path) -> None:
    (tmp_path / "a.zip").write_bytes(_zip({"x/1.wav": b"a", "y/1.wav": b"b", "z.txt": b"c"}))
    assert extract_wavs(tmp_path / "a.zip", tmp_path / "out", max_bytes=CAP) == [
        "x__1.wav",
        "y__1.wav",
    ]


async def test_wham_noise_dataset(server: Server, tmp_path: Path) -> None:
    data = server.files["wham.zip"]
    archive = Archive(server.url("wham.zip"), _sha(data), len(data))
    async with ScoringPool(workers=2) as pool:
        wham = WhamSource([archive], tmp_path / "corpora", pool=pool, max_bytes=CAP)
        sources = Sources(EspeakSource(pool), noise=wham)
        spec = DatasetSpec(get_competition("DENOISING_48000HZ"), 4, 3, tmp_path / "ds", 1)
        ds = await generate_dataset(spec, pool=pool, sources=sources)
        again = WhamSource([archive], tmp_path / "corpora", pool=pool, max_bytes=CAP)
        await again.prepare()
    assert ds.manifest.sources == {"speech": "espeak", "noise": "wham"}
    # the upper-case .WAV member is extracted and indexed (it is silent, so it is redrawn)
    assert len(wham._files or ()) == 3
    used = {f.noise.split(":")[1].split("@")[0] for f in ds.manifest.files if f.noise}
    assert used == {"high_res_wham__audio__cafe.wav", "high_res_wham__audio__street.wav"}
    redrawn = [f.noise for f in ds.manifest.files if f.noise and "redrawn" in f.noise]
    assert len(redrawn) == 1  # seed 3 draws the silent file once in 4
    for noise in redrawn:  # the silent file, then the next file of the sorted corpus
        assert noise.startswith("wham:high_res_wham__audio__cafe.wav@")
        assert "(redrawn after silent high_res_wham__audio__SILENT.WAV@" in noise
    assert all(-2.5 <= (f.snr_db or 0) <= 18.5 for f in ds.manifest.files)
    assert [r[0] for r in server.requests] == ["wham.zip"]  # downloaded once
    assert _names(tmp_path / "corpora" / "wham") == ["downloads", "index.json", "wham.zip.d"]
    # the verified archive is deleted after extraction; its digest marker stays
    assert _names(tmp_path / "corpora" / "wham" / "downloads") == ["wham.zip.sha256"]


async def test_an_oversized_unpinned_part_restarts_from_scratch(
    server: Server, tmp_path: Path
) -> None:
    data = server.files["blob.bin"]
    _write(tmp_path / "blob.bin.part", data + b"junk" * 100)  # longer than the server's file
    async with aiohttp.ClientSession() as session:
        path = await fetch_archive(
            Archive(server.url("blob.bin")), tmp_path, session=session, max_bytes=CAP, backoff_s=0
        )
    assert _read(path) == data
    assert server.requests == [("blob.bin", "bytes=100400-"), ("blob.bin", None)]


async def test_arni_rirs_are_cut_and_long_ones_never_drawn(server: Server, tmp_path: Path) -> None:
    archive = Archive(server.url("arni.zip"))
    async with ScoringPool(workers=2) as pool:
        arni = ArniSource([archive], tmp_path / "corpora", pool=pool, max_bytes=CAP)
        sources = Sources(EspeakSource(pool), rir=arni)
        spec = DatasetSpec(get_competition("DEREVERBERATION_16000HZ"), 6, 9, tmp_path / "ds", 1)
        ds = await generate_dataset(spec, pool=pool, sources=sources)
    assert arni.usable == 2  # 3 channels, one with RT60 3 s
    rirs = {f.rir for f in ds.manifest.files}
    assert rirs <= {"arni:IR_Arni__mic1__rir_a.wav#0", "arni:IR_Arni__mic2__rir_a.wav#0"}
    for f in ds.manifest.files:
        assert f.rt60_s is not None
        assert f.rt60_s <= 2.0
    rt = {f.rir: f.rt60_s for f in ds.manifest.files}
    if "arni:IR_Arni__mic1__rir_a.wav#0" in rt:
        assert rt["arni:IR_Arni__mic1__rir_a.wav#0"] == pytest.approx(0.4, abs=0.05)


def _read(p: Path) -> bytes:
    return p.read_bytes()


def _write(p: Path, data: bytes) -> None:
    p.write_bytes(data)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())
