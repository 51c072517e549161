"""The miner's two HTTP servers.

* The signed server (``btauth/1``; ``net.btauth_middleware``): ``POST /v3/model`` answers the
  configured model (404 for another competition), ``POST /v3/feedback`` stores the Feedback and
  logs its headline numbers. Both need a validator permit and ``chain.min_validator_stake``.
* The local server (127.0.0.1 by default, no auth): ``GET /healthz`` and ``GET /metrics``.

Both are served by ``runtime.serve_app``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from ..config import MinerSettings
from ..net import CallerRule, body_of, btauth_middleware, caller_of, json_error, message_response
from ..protocol import (
    FEEDBACK_PATH,
    MODEL_PATH,
    FeedbackRequest,
    FeedbackResponse,
    ModelRequest,
    ModelResponse,
    decode_message,
)
from ._metrics import health_report, prometheus_text
from ._state import MinerState
from .feedback import FeedbackRecord, FeedbackStore, headline

__all__ = ["health_app", "signed_app"]

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ROUTES = (MODEL_PATH, FEEDBACK_PATH)


def _counting(state: MinerState) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path if request.path in _ROUTES else "other"
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            state.count("requests_total", path=path, status=str(exc.status))
            raise
        except ConnectionError:
            raise  # the client went away: the connection guard counts it
        except Exception:
            state.count("requests_total", path=path, status="500")
            log.exception("http.handler_failed", path=request.path)
            return json_error(500, "internal error")
        state.count("requests_total", path=path, status=str(resp.status))
        log.debug("http.request", path=request.path, status=resp.status, peer=request.remote)
        return resp

    return middleware


def signed_app(settings: MinerSettings, state: MinerState, store: FeedbackStore) -> web.Application:
    rule = CallerRule(require_permit=True, min_stake=settings.chain.min_validator_stake)
    model = settings.model
    timeout = settings.server.request_timeout_s

    async def model_handler(request: web.Request) -> web.Response:
        req = decode_message(ModelRequest, body_of(request))
        if req.competition != model.competition:
            return json_error(404, f"this miner has no model for {req.competition}")
        return message_response(
            ModelResponse(
                competition=model.competition,
                hf_model_namespace=model.namespace,
                hf_model_name=model.name,
                hf_model_revision=model.revision,
            )
        )

    async def feedback_handler(request: web.Request) -> web.Response:
        caller = caller_of(request)
        msg = decode_message(FeedbackRequest, body_of(request))
        record = FeedbackRecord(state.now(), caller.hotkey, caller.neuron.uid, msg)
        try:
            async with asyncio.timeout(timeout):
                await store.append(record)
        except (OSError, TimeoutError) as exc:
            state.count("feedback_store_errors_total")
            log.error("feedback.store_failed", path=str(store.path), error=repr(exc))
            return json_error(503, "could not store the feedback; retry later")
        state.count("feedback_total")
        state.last_feedback = record.received_at
        if msg.result is not None and msg.result.hotkey != state.hotkey:
            log.warning("feedback.other_hotkey", result_hotkey=msg.result.hotkey)
        log.info(
            "feedback.received", validator=caller.hotkey, uid=caller.neuron.uid, **headline(msg)
        )
        return message_response(FeedbackResponse())

    app = web.Application(
        middlewares=[
            _counting(state),
            btauth_middleware(
                receiver=state.hotkey,
                metagraph=state.metagraph,
                rules={MODEL_PATH: rule, FEEDBACK_PATH: rule},
                default_rule=rule,
                max_body_bytes=settings.server.max_body_bytes,
            ),
        ],
        client_max_size=settings.server.max_body_bytes,
    )
    app.router.add_post(MODEL_PATH, model_handler)
    app.router.add_post(FEEDBACK_PATH, feedback_handler)
    return app


def health_app(state: MinerState, *, stale_after_s: float) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(health_report(state, stale_after_s=stale_after_s))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=prometheus_text(state), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
