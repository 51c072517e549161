"""The output-zip checks: hostile archives fail with one exact reason and write nothing; the
end records are read before ``zipfile`` parses a central directory (no memory blow-up)."""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest

from soundsright_async.sandbox.safezip import UnsafeZip, extract_zip, zip_extent


def _zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _raw_zip(
    names: list[bytes], *, members: int | None = None, cd_size: int | None = None
) -> bytes:
    """Stored empty members built by hand (fast for 200k entries); the end record may lie."""
    local, central = bytearray(), bytearray()
    crc = zlib.crc32(b"")
    for name in names:
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0)
        local += name
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            0,
            0,
            0,
            crc,
            0,
            0,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += name
    n = len(names) if members is None else members
    size = len(central) if cd_size is None else cd_size
    tail = b""
    if n > 0xFFFF or size > 0xFFFFFFFF:  # what zipfile writes: zip64 record + locator
        at = len(local) + len(central)
        tail = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size, len(local))
        tail += struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    n16, size32 = min(n, 0xFFFF), min(size, 0xFFFFFFFF)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n16, n16, size32, len(local), 0)
    return bytes(local + central + tail + eocd)


def _extract(
    tmp_path: Path, body: bytes, *, max_members: int = 5, max_bytes: int = 4096
) -> list[str]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    archive = out / ".enhanced.zip"  # where the client puts it: inside the destination
    archive.write_bytes(body)
    try:
        return extract_zip(archive, out, max_members=max_members, max_bytes=max_bytes)
    finally:
        archive.unlink()


def _refused(tmp_path: Path, body: bytes, **kw: int) -> UnsafeZip:
    with pytest.raises(UnsafeZip) as exc:
        _extract(tmp_path, body, **kw)
    assert list((tmp_path / "out").iterdir()) == []  # nothing written, nothing left
    return exc.value


def _dup() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate, writes it anyway
        return _zip([("a.wav", b"1"), ("a.wav", b"2")])


def _corrupt_deflate() -> bytes:
    body = bytearray(_zip([("a.wav", bytes(range(256)) * 8)]))
    start = 30 + len("a.wav")  # first local header: the compressed data follows the name
    body[start : start + 16] = b"\xff" * 16
    return bytes(body)


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (
            _zip([("a" * 256 + ".wav", b"x")]),
            "name_too_long",
            "is 260 bytes: at most 255 per path component",
        ),
        (_zip([("d/" + "é" * 128, b"x")]), "name_too_long", "is 258 bytes"),
        (_zip([("/".join(["d" * 200] * 6), b"x")]), "name_too_long", "1205 bytes"),
        (_zip([("x", b"1"), ("x/y.wav", b"2")]), "path_conflict", "'x' is both a file"),
        (_zip([("x/y.wav", b"2"), ("X", b"1")]), "path_conflict", "'x' is both a file"),
        (_zip([(".enhanced.zip", b"1")]), "path_conflict", "named like the archive"),
        (_zip([(".ENHANCED.ZIP/a.wav", b"1")]), "path_conflict", "named like the archive"),
        (_dup(), "duplicate", "'a.wav' appears twice"),
        (_corrupt_deflate(), "bad_member", "member 'a.wav' is corrupt: error: Error -3"),
        (
            _zip([("a.wav", b"\0" * 4096)]),
            "too_large",
            "members declare 4096 bytes (less than 4096)",
        ),
        (
            _raw_zip([b"a.wav"], members=19_800_000, cd_size=2**30),
            "too_many_members",
            "declares 19800000 members (at most 5)",
        ),
        (
            _raw_zip([b"a.wav"], cd_size=2**30),
            "central_directory_too_large",
            "declares 1073741824 bytes (at most 5120)",
        ),
        (b"PK\x03\x04" + b"\0" * 100, "not_a_zip", "no end-of-central-directory record"),
    ],
)
def test_hostile_zip_is_refused_with_its_reason(
    tmp_path: Path, body: bytes, reason: str, message: str
) -> None:
    err = _refused(tmp_path, body)
    assert err.reason == reason
    assert message in str(err)


def test_the_cap_is_exclusive(tmp_path: Path) -> None:
    assert _extract(tmp_path, _zip([("a.wav", b"\0" * 4095)])) == ["a.wav"]
    assert (tmp_path / "out/a.wav").stat().st_size == 4095


def test_zip64_end_record_is_read(tmp_path: Path) -> None:
    plain = _raw_zip([b"a.wav"])
    eocd_at = len(plain) - 22
    cd_offset = struct.unpack_from("<L", plain, eocd_at + 16)[0]
    eocd64_at = eocd_at
    eocd64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 2**40, 2**40, 51, cd_offset)
    loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd64_at, 1)
    body = plain[:eocd_at] + eocd64 + loc + plain[eocd_at:]
    assert zip_extent(io.BytesIO(body)) == (2**40, 51)
    assert _refused(tmp_path, body).reason == "too_many_members"


def test_extent_of_an_honest_zip() -> None:
    body = _raw_zip([b"a.wav", b"b.wav"])
    assert zip_extent(io.BytesIO(body)) == (2, 2 * (46 + 5))
    commented = _zip([("a.wav", b"x")])[:-2] + struct.pack("<H", 5) + b"hello"
    assert zip_extent(io.BytesIO(commented))[0] == 1


def test_a_real_200k_entry_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    names = [b"%06d" % i for i in range(200_000)]
    body = _raw_zip(names)
    assert len(body) > 17_000_000
    assert len(zipfile.ZipFile(io.BytesIO(body)).infolist()) == 200_000  # a valid archive
    tracemalloc.start()
    try:
        err = _refused(tmp_path, body, max_members=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.reason == "too_many_members"
    assert "declares 200000 members" in str(err)
    # parsing would build 200k ZipInfo objects (well over 50 MB); the refusal reads 64 KiB
    assert peak < 1_000_000


def test_a_lying_small_count_still_bounds_the_parse(tmp_path: Path) -> None:
    """The end record says 3 members but the directory holds 5000: the directory's size is
    over the budget, so zipfile never parses it."""
    names = [b"%06d" % i for i in range(5000)]
    err = _refused(tmp_path, _raw_zip(names, members=3), max_members=5)
    assert err.reason == "central_directory_too_large"


def test_count_within_budget_but_more_parsed_members_is_refused(tmp_path: Path) -> None:
    names = [b"%d.wav" % i for i in range(8)]
    err = _refused(tmp_path, _raw_zip(names, members=3), max_members=5)
    assert (err.reason, str(err)) == ("too_many_members", "8 members (at most 5)")
