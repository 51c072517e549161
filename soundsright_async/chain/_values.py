"""Pure helpers shared by the adapters: weight vectors, commitment text, endpoints."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping

__all__ = ["U16_MAX", "commitment_text", "format_endpoint", "normalize_weights"]

U16_MAX = 65535


def normalize_weights(weights: Mapping[int, float]) -> dict[int, int]:
    """Max-upscale to u16 and drop zeros, like the chain client does.

    ``ValueError`` for a uid outside 0..65535, a negative or non-finite weight, or all zeros.
    """
    for uid, w in weights.items():
        if isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid <= U16_MAX:
            raise ValueError(f"uid must be an int in 0..65535, not {uid!r}")
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weight for uid {uid} must be finite and non-negative, not {w!r}")
    top = max(weights.values(), default=0.0)
    if top <= 0:
        raise ValueError("all weights are zero; nothing to set")
    out = {uid: round(w / top * U16_MAX) for uid, w in sorted(weights.items())}
    return {uid: v for uid, v in out.items() if v}


def commitment_text(data: bytes) -> str:
    """Raw commitment bytes as the chain client shows them: UTF-8, else ``0x``-hex."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()


def format_endpoint(ip: str, port: int) -> str:
    """``ip:port`` (``[v6]:port``); ``ValueError`` for a bad address, port or unspecified ip."""
    addr = ipaddress.ip_address(ip)
    if addr.is_unspecified:
        raise ValueError(f"cannot serve on the unspecified address {ip}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, not {port}")
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"
