"""btauth/1 for aiohttp servers: verify the signature, then who may call, then the handler.

``btauth_middleware`` answers, with a short JSON body ``{"error": ..., "status": ...}``:

* 413 when the body is larger than ``max_body_bytes`` (checked before anything is verified);
* before the body is read, from the headers alone: 401 without btauth/1 headers or for another
  receiver, 503 without a metagraph, 403 for a claimed hotkey that is not registered or lacks
  the route's permit/stake. These answers close the connection; only a caller that passes them
  is ``runtime.admit``-ted (it may use the guard's reserve) and has its body read;
* 401 when btauth/1 fails: unsigned, malformed headers, bad signature (tampered body or path),
  another receiver, stale or future nonce, replayed nonce;
* 403 when the signer is not registered on the subnet, or the route's ``CallerRule`` asks for a
  validator permit and/or a minimum stake the caller lacks;
* 503 while no metagraph is loaded yet;
* 400 when the body cannot be read as sent (a broken chunked framing, a Content-Encoding that
  does not decode; the connection closes), or when the handler raises ``ProtocolError``
  (malformed JSON, missing or mistyped fields).

The verified caller and the exact body bytes are on the request (``caller_of``, ``body_of``).
Replays are refused through a per-app in-memory nonce store (one process; a multi-process server
needs a shared store).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from bittensor import http_auth as ha
from pydantic import BaseModel

from ..chain.types import Metagraph, Neuron
from ..protocol import ProtocolError, encode_message
from ..runtime import admit

__all__ = [
    "REGISTERED",
    "Caller",
    "CallerRule",
    "MetagraphCache",
    "MetagraphView",
    "body_of",
    "btauth_middleware",
    "caller_of",
    "json_error",
    "message_response",
]

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
try:
    _CALLER: Any = web.RequestKey("soundsright.caller", object)
    _BODY: Any = web.RequestKey("soundsright.body", bytes)
except AttributeError:  # aiohttp < 3.12 has no RequestKey
    _CALLER, _BODY = "soundsright.caller", "soundsright.body"


@dataclass(frozen=True, slots=True)
class CallerRule:
    """Who may call a route (beyond a valid btauth/1 signature from a registered hotkey)."""

    require_permit: bool = False
    min_stake: float = 0.0
    """Compared with the caller's ``stake_alpha`` (total stake weight in alpha)."""


REGISTERED = CallerRule()


@dataclass(frozen=True, slots=True)
class Caller:
    hotkey: str
    nonce_ns: int
    neuron: Neuron


class MetagraphView(Protocol):
    def current(self) -> Metagraph | None: ...


class MetagraphCache:
    """The latest metagraph; a sync loop calls ``update``, the middleware reads ``current``."""

    def __init__(self, metagraph: Metagraph | None = None) -> None:
        self._mg = metagraph

    def update(self, metagraph: Metagraph) -> None:
        self._mg = metagraph

    def current(self) -> Metagraph | None:
        return self._mg


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def _refuse(status: int, message: str) -> web.Response:
    """An answer sent before the body is read: the connection closes after it (an unread body
    is never drained)."""
    resp = json_error(status, message)
    resp.force_close()
    return resp


def message_response(message: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=encode_message(message), status=status, content_type="application/json"
    )


def caller_of(request: web.Request) -> Caller:
    caller: Caller = request[_CALLER]
    return caller


def body_of(request: web.Request) -> bytes:
    body: bytes = request[_BODY]
    return body


class _TooLarge(Exception):
    pass


# What reading a body the client framed or encoded wrongly raises (a chunk size that is not hex,
# a gzip stream that does not inflate): the client's fault, so a 400, never a handler failure.
_BAD_BODY = (web.RequestPayloadError, HttpProcessingError)


async def _read_capped(request: web.Request, cap: int) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def btauth_middleware(
    *,
    receiver: str,
    metagraph: MetagraphView,
    rules: Mapping[str, CallerRule] | None = None,
    default_rule: CallerRule = REGISTERED,
    public_paths: frozenset[str] = frozenset(),
    max_body_bytes: int = 256 * 1024,
    max_age_s: float = ha.DEFAULT_MAX_AGE,
    allowed_skew_s: float = ha.DEFAULT_ALLOWED_SKEW,
    nonce_store: Any = None,
    now_ns: Callable[[], int] | None = None,
) -> Any:
    """Middleware for ``web.Application(middlewares=[...])``.

    ``receiver`` is our hotkey ss58 (requests signed for another receiver are refused);
    ``rules`` maps a path to its ``CallerRule`` (others get ``default_rule``); paths in
    ``public_paths`` skip authentication (health checks).
    """
    # A nonce is fresh for at most max_age + skew seconds after we first see it, so keeping it
    # twice that is enough (a wall-clock step inside the margin is still covered). The store
    # holds every nonce of that window: at 600-750 requests/s, 60 s cost the miner ~18 MB
    # of RSS, 24 s ~9 MB (docs/benchmarks.md, "Soak").
    store = nonce_store or ha.InMemoryNonceStore(retention=2 * (max_age_s + allowed_skew_s))
    route_rules = dict(rules or {})

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public_paths:
            return await _guarded(request, handler)
        if request.content_length is not None and request.content_length > max_body_bytes:
            return _refuse(413, f"body larger than {max_body_bytes} bytes")
        # Who is calling, from the headers alone, before a byte of the body is read: strangers
        # never make us buffer a body. The signature (over the body) is verified after.
        claimed = request.headers.get(ha.HEADER_HOTKEY)
        if request.headers.get(ha.HEADER_VERSION) != ha.VERSION or not claimed:
            return _refuse(401, "MalformedAuth: missing btauth/1 headers")
        if request.headers.get(ha.HEADER_RECEIVER) not in (None, receiver):
            return _refuse(401, "WrongReceiver: request was signed for a different receiver")
        mg = metagraph.current()
        if mg is None:
            return _refuse(503, "metagraph not loaded yet; retry shortly")
        neuron = mg.by_hotkey(claimed)
        if neuron is None:
            return _refuse(403, f"hotkey {claimed} is not registered")
        rule = route_rules.get(request.path, default_rule)
        if rule.require_permit and not neuron.validator_permit:
            return _refuse(403, f"hotkey {claimed} has no validator permit")
        if neuron.stake_alpha < rule.min_stake:
            return _refuse(
                403, f"hotkey {claimed} has stake {neuron.stake_alpha:g} < {rule.min_stake:g}"
            )
        admit(request)
        try:
            body = await _read_capped(request, max_body_bytes)
        except _TooLarge:
            return _refuse(413, f"body larger than {max_body_bytes} bytes")
        except _BAD_BODY as exc:
            return _refuse(400, f"malformed body: {_one_line(exc)}")
        try:
            verified = ha.verify(
                request.headers,
                body,
                method=request.method,
                path=request.raw_path,
                self_hotkey_ss58=receiver,
                max_age=max_age_s,
                allowed_skew=allowed_skew_s,
                nonce_store=store,
                now_ns=now_ns() if now_ns is not None else None,
            )
        except ha.AuthError as exc:
            return json_error(401, f"{type(exc).__name__}: {exc}")
        request[_CALLER] = Caller(verified.hotkey_ss58, verified.nonce_ns, neuron)
        request[_BODY] = body
        return await _guarded(request, handler)

    return middleware


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).removeprefix("400, message: ")
    return text[:200] or type(exc).__name__


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProtocolError as exc:
        return json_error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
