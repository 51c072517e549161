"""A tiny PNG writer and log-magnitude spectrograms as inline ``data:`` images (no matplotlib).

``spectrogram_png(samples, rate)`` is CPU work of a few tens of milliseconds per file: callers on
an event loop run it in a thread.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import numpy.typing as npt

__all__ = ["colormap", "data_uri", "png_bytes", "spectrogram_image", "spectrogram_png"]

# A perceptually ordered dark-to-bright ramp (anchors of viridis), interpolated linearly.
_ANCHORS = np.array(
    [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ],
    dtype=np.float64,
)


def colormap(levels: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Values in [0, 1] (clipped) -> RGB bytes, shape ``levels.shape + (3,)``."""
    t = np.clip(levels, 0.0, 1.0) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(np.int64), len(_ANCHORS) - 2)
    f = (t - i)[..., None]
    rgb = _ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f
    out: npt.NDArray[np.uint8] = np.rint(rgb).astype(np.uint8)
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(rgb: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` (shape ``(height, width, 3)``, row 0 at the top)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("expected a (height, width, 3) uint8 array")
    height, width = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))  # filter 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def spectrogram_image(
    samples: npt.NDArray[np.floating],
    rate: int,
    *,
    width: int = 360,
    height: int = 120,
    floor_db: float = -80.0,
) -> npt.NDArray[np.uint8]:
    """Log-magnitude spectrogram, low frequencies at the bottom, ``floor_db`` below the peak
    black, resampled to at most ``width`` x ``height`` pixels."""
    from scipy import signal

    x = np.asarray(samples, dtype=np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    nper = min(512 if rate > 16000 else 256, max(len(x), 16))
    _, _, sxx = signal.spectrogram(x, fs=rate, nperseg=nper, noverlap=nper // 2)
    db = 10.0 * np.log10(np.maximum(sxx, 1e-20))
    peak = float(db.max()) if db.size else 0.0
    level = (db - (peak + floor_db)) / -floor_db
    rows = np.linspace(0, level.shape[0] - 1, min(height, level.shape[0])).round().astype(int)
    cols = np.linspace(0, max(level.shape[1] - 1, 0), min(width, max(level.shape[1], 1)))
    level = level[rows][:, cols.round().astype(int)]
    return colormap(level[::-1])


def spectrogram_png(samples: npt.NDArray[np.floating], rate: int) -> bytes:
    return png_bytes(spectrogram_image(samples, rate))
