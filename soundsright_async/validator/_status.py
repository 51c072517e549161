"""The validator's status server (127.0.0.1 by default, read-only, no auth).

* ``GET /healthz``: per-task state and last tick, event-loop lag; 503 when a task is stale or the
  daemon is not ready yet.
* ``GET /status``: JSON: the epoch, seed and blocks left, every candidate with its state, result
  and reason, rejections, the latest winners and weights, weight attempts, the Feedback queue.
* ``GET /metrics``: Prometheus text (results by outcome, step durations, queue depths, loop lag,
  weight attempts, discovery answers, Feedback deliveries).
* ``GET /``: the dashboard (HTML + server-rendered SVG of ``/status``); ``GET /panel`` is its
  body, which ``/static/app.js`` re-fetches every few seconds; ``GET /static/{style.css,app.js}``.
  Strict CSP: nothing but the page's own origin (docs/dashboard.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import anyio
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..dashboard import STATIC, dashboard_page, panel, static_asset
from ..runtime import ServerLimits
from ._state import ValidatorState
from ._store import Store

__all__ = [
    "STATUS_LIMITS",
    "SharedReport",
    "candidates_doc",
    "health_report",
    "judgement_doc",
    "status_app",
    "status_report",
    "summary",
]

STATUS_LIMITS = ServerLimits(
    max_connections=64, reserve=8, max_pending_per_ip=48, admit_on_headers=True
)
"""The status server's connection limits: local and read-only, but still bounded (a stuck
client cannot pile up)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def health_report(state: ValidatorState) -> dict[str, Any]:
    stale = state.board.stale()
    ok = state.ready and not stale
    return {
        "status": "ok" if ok else ("starting" if not state.ready else "degraded"),
        "ready": state.ready,
        "stale_tasks": stale,
        "tasks": state.board.snapshot(),
        "loop_lag": state.lag.to_dict(),
        "uptime_s": round(state.now() - state.started_at, 3),
    }


async def status_report(state: ValidatorState, store: Store) -> dict[str, Any]:
    epoch = state.epoch
    doc: dict[str, Any] = {
        "hotkey": state.hotkey,
        "head_block": None if state.head is None else state.head.number,
        "competitions": list(state.competitions),
        "epoch": None,
        "candidates": [],
        "rejections": [],
        "unprocessed": {},
        "latest_judgement": None,
        "weight_attempts": await store.weight_attempts(10),
        "feedback_queue": await store.outbox_counts(),
        "engines": [
            {"name": e.name, "slots": e.slots, "models": e.assigned, "up": e.up}
            for e in state.engines()
        ],
        "health": health_report(state),
    }
    if epoch is not None:
        doc["epoch"] = {
            "number": epoch.number,
            "start_block": epoch.start_block,
            "end_block": epoch.end_block,
            "blocks_left": state.blocks_left(),
            "seed": epoch.seed,
            "start_hash": epoch.start_hash,
            "status": epoch.status,
        }
        doc["candidates"] = await candidates_doc(store, epoch.number, state.running, state.now())
        doc["rejections"] = await store.rejections(epoch.number)
        doc["unprocessed"] = {
            c: summary(m) for c, m in (await store.unprocessed(epoch.number)).items()
        }
    doc["latest_judgement"] = await judgement_doc(store)
    doc["generated_at"] = state.now()
    return doc


async def candidates_doc(
    store: Store,
    epoch: int,
    running: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    now: float = 0.0,
) -> list[dict[str, Any]]:
    """Every candidate of ``epoch`` with its state, live step, result, steps and averages."""
    results = {(r.hotkey, r.competition): r for r in await store.results(epoch)}
    out = []
    for c in await store.candidates(epoch):
        r = results.get((c.hotkey, c.competition))
        live = (running or {}).get((c.hotkey, c.competition))
        since = None if live is None else live.get("since")
        out.append(
            {
                "uid": c.uid,
                "hotkey": c.hotkey,
                "kind": c.kind,
                "competition": c.competition,
                "model": f"{c.namespace}/{c.name}@{c.revision}",
                "commitment_block": c.commitment_block,
                "state": c.state,
                "step": None if live is None else live["step"],
                "running_s": (
                    round(now - since, 3) if isinstance(since, int | float) and now else None
                ),
                "content_hash": c.content_hash or None,
                "passed": None if r is None else r.passed,
                "failed_step": None if r is None else r.failed_step,
                "reason": (r.reason if r is not None else c.reason) or None,
                "shared_from": None if r is None else r.shared_from,
                "steps": [] if r is None else r.steps,
                "metrics": None if r is None or not r.metrics else summary(r.metrics),
            }
        )
    return out


async def judgement_doc(store: Store, epoch: int | None = None) -> dict[str, Any] | None:
    """The stored judgement of ``epoch`` (default: the latest): winners (with their uid),
    non-zero weights and scores by uid."""
    judged = await store.judgement(epoch)
    if judged is None:
        return None
    out = orjson.loads(judged[2])
    winners: dict[str, dict[str, Any]] = {
        c: {m: dict(w) for m, w in ws.items()} for c, ws in out.get("winners", {}).items()
    }
    for d in out.get("decisions", []):
        w = d.get("winner")
        slot = winners.get(d.get("competition"), {}).get(d.get("metric"))
        if w is not None and slot is not None and slot.get("hotkey") == w.get("hotkey"):
            slot["uid"] = w.get("uid")
    return {
        "epoch": judged[0],
        "winners": winners,
        "weights": {str(u): w for u, w in enumerate(out.get("weights", [])) if w > 0},
        "scores": {str(u): s for u, s in enumerate(out.get("scores", [])) if s > 0},
    }


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"average": m["average"], "confidence_interval": m.get("confidence_interval")}
        for name, m in metrics.get("metrics", {}).items()
    }


class SharedReport:
    """``status_report`` for concurrent requests: one that arrives while a report is being built
    gets that report instead of starting its own. A report is ~8 store reads, each a hop to the
    store's single thread; without sharing, N concurrent ``/status`` or dashboard requests queue
    8N hops there (docs/benchmarks.md, "Soak"). The report is shared: callers must not mutate it.
    """

    def __init__(self, state: ValidatorState, store: Store) -> None:
        self._state = state
        self._store = store
        self._building: asyncio.Future[dict[str, Any]] | None = None

    async def get(self) -> dict[str, Any]:
        if self._building is None:
            self._building = asyncio.ensure_future(status_report(self._state, self._store))
            self._building.add_done_callback(self._built)
        # shielded: a caller that goes away does not cancel the build the others wait for
        return await asyncio.shield(self._building)

    def _built(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        if self._building is fut:
            self._building = None
        if not fut.cancelled():
            fut.exception()  # retrieved: an error is the waiters' to report, not the loop's


def status_app(state: ValidatorState, store: Store, *, refresh_s: float = 5.0) -> web.Application:
    """The status server's routes; ``refresh_s`` is how often the dashboard re-fetches."""
    report = SharedReport(state, store)

    async def healthz(_: web.Request) -> web.Response:
        report = health_report(state)
        return web.json_response(report, status=200 if report["status"] == "ok" else 503)

    async def status(_: web.Request) -> web.Response:
        body = orjson.dumps(await report.get(), option=orjson.OPT_NON_STR_KEYS)
        return web.Response(body=body, content_type="application/json")

    async def metrics(_: web.Request) -> web.Response:
        for task, stale in ((t, t in state.board.stale()) for t in state.board.tasks):
            state.metrics.task_stale.labels(task).set(int(stale))
        for e in state.engines():
            state.metrics.engine_up.labels(e.name).set(int(e.up))
            state.metrics.engine_models.labels(e.name).set(e.assigned)
        for q in ("p50", "p99", "max"):
            state.metrics.loop_lag.labels(q).set(state.lag.to_dict()[f"{q}_s"])
        return web.Response(
            body=generate_latest(state.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def render(fn: Callable[[dict[str, Any]], str]) -> str:
        text: str = await anyio.to_thread.run_sync(fn, await report.get())
        return text

    async def index(_: web.Request) -> web.Response:
        return _html(await render(partial(dashboard_page, refresh_s=refresh_s)))

    async def panel_view(_: web.Request) -> web.Response:
        return _html(await render(panel))

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(
            body=static_asset(name),
            headers={
                "Content-Type": f"{STATIC[name]}; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/panel", panel_view)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app


def _html(text: str) -> web.Response:
    resp = web.Response(
        text=text,
        content_type="text/html",
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
    resp.enable_compression()  # when the client accepts it: the panel is ~2.6 kB per candidate
    return resp
