"""btauth/1 signed HTTP: the aiohttp server middleware (``server``) and the client (``client``)."""

from __future__ import annotations

from .client import (
    PeerError,
    PeerProtocolError,
    PeerRejectedError,
    PeerResponse,
    PeerUnavailableError,
    SignedClient,
)
from .server import (
    REGISTERED,
    Caller,
    CallerRule,
    MetagraphCache,
    MetagraphView,
    body_of,
    btauth_middleware,
    caller_of,
    json_error,
    message_response,
)

__all__ = [
    "REGISTERED",
    "Caller",
    "CallerRule",
    "MetagraphCache",
    "MetagraphView",
    "PeerError",
    "PeerProtocolError",
    "PeerRejectedError",
    "PeerResponse",
    "PeerUnavailableError",
    "SignedClient",
    "body_of",
    "btauth_middleware",
    "caller_of",
    "json_error",
    "message_response",
]
