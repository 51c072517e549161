"""The validator's status server (127.0.0.1 by default, read-only, no auth).

* ``GET /healthz``: per-task state and last tick, event-loop lag; 503 when a task is stale or the
  daemon is not ready yet.
* ``GET /status``: JSON: the epoch, seed and blocks left, every candidate with its state, result
  and reason, rejections, the latest winners and weights, weight attempts, the Feedback queue.
* ``GET /metrics``: Prometheus text (results by outcome, step durations, queue depths, loop lag,
  weight attempts, discovery answers, Feedback deliveries).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ._state import ValidatorState
from ._store import Store

__all__ = ["health_report", "status_app", "status_report"]


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
        results = {(r.hotkey, r.competition): r for r in await store.results(epoch.number)}
        for c in await store.candidates(epoch.number):
            r = results.get((c.hotkey, c.competition))
            live = state.running.get((c.hotkey, c.competition))
            doc["candidates"].append(
                {
                    "uid": c.uid,
                    "hotkey": c.hotkey,
                    "kind": c.kind,
                    "competition": c.competition,
                    "model": f"{c.namespace}/{c.name}@{c.revision}",
                    "commitment_block": c.commitment_block,
                    "state": c.state,
                    "step": None if live is None else live["step"],
                    "content_hash": c.content_hash or None,
                    "passed": None if r is None else r.passed,
                    "failed_step": None if r is None else r.failed_step,
                    "reason": (r.reason if r is not None else c.reason) or None,
                    "shared_from": None if r is None else r.shared_from,
                    "steps": [] if r is None else r.steps,
                    "metrics": None if r is None or not r.metrics else _summary(r.metrics),
                }
            )
        doc["rejections"] = await store.rejections(epoch.number)
        doc["unprocessed"] = {
            c: _summary(m) for c, m in (await store.unprocessed(epoch.number)).items()
        }
    judged = await store.judgement()
    if judged is not None:
        out = orjson.loads(judged[2])
        doc["latest_judgement"] = {
            "epoch": judged[0],
            "winners": out.get("winners", {}),
            "weights": {str(u): w for u, w in enumerate(out.get("weights", [])) if w > 0},
            "scores": {str(u): s for u, s in enumerate(out.get("scores", [])) if s > 0},
        }
    return doc


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"average": m["average"], "confidence_interval": m.get("confidence_interval")}
        for name, m in metrics.get("metrics", {}).items()
    }


def status_app(state: ValidatorState, store: Store) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        report = health_report(state)
        return web.json_response(report, status=200 if report["status"] == "ok" else 503)

    async def status(_: web.Request) -> web.Response:
        body = orjson.dumps(await status_report(state, store), option=orjson.OPT_NON_STR_KEYS)
        return web.Response(body=body, content_type="application/json")

    async def metrics(_: web.Request) -> web.Response:
        for task, stale in ((t, t in state.board.stale()) for t in state.board.tasks):
            state.metrics.task_stale.labels(task).set(int(stale))
        for q in ("p50", "p99", "max"):
            state.metrics.loop_lag.labels(q).set(state.lag.to_dict()[f"{q}_s"])
        return web.Response(
            body=generate_latest(state.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app
