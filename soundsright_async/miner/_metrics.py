"""``/healthz`` (JSON) and ``/metrics`` (Prometheus text format 0.0.4) views of ``MinerState``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import __version__
from ._state import MinerState

__all__ = ["health_report", "prometheus_text"]

_PREFIX = "soundsright_miner_"
_HELP = {
    "requests_total": "Signed HTTP requests by path and status.",
    "feedback_total": "Feedback messages stored in feedback.jsonl.",
    "feedback_store_errors_total": "Feedback messages that could not be stored.",
    "chain_errors_total": "Failed chain calls by task.",
    "commits_total": "Commitment writes by result.",
    "serves_total": "Endpoint writes by result.",
    "task_restarts_total": "Crashed tasks restarted, by task.",
}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _age(state: MinerState, ts: float | None) -> float | None:
    return None if ts is None else round(max(0.0, state.now() - ts), 3)


def health_report(state: MinerState, *, stale_after_s: float) -> dict[str, Any]:
    """Liveness plus the last sync / commit times; ``status`` is ``ok`` or ``degraded``."""
    problems = []
    board = state.board.tasks
    sync = board.get("metagraph")
    if sync is not None and sync.state == "retrying":
        problems.append(f"chain: the last metagraph sync failed ({sync.last_error})")
    elif state.last_sync is None or (_age(state, state.last_sync) or 0.0) > stale_after_s:
        problems.append("metagraph sync is stale")
    if state.registered is False:
        problems.append("hotkey is not registered on the subnet")
    if state.commitment_ok is not True:
        problems.append("commitment on chain does not match the configured model (yet)")
    if state.endpoint_ok is not True:
        problems.append("published endpoint does not match (yet)")
    for name, info in sorted(board.items()):
        if info.state == "retrying" and name != "metagraph":
            problems.append(f"task {name} is failing ({info.failures}x): {info.last_error}")
        elif info.state == "restarting":
            problems.append(f"task {name} crashed and is restarting ({info.restarts}x)")
    return {
        "status": "ok" if not problems else "degraded",
        "problems": problems,
        "version": __version__,
        "hotkey": state.hotkey,
        "uid": state.uid,
        "registered": state.registered,
        "uptime_s": _age(state, state.started_at),
        "model": {
            "competition": state.competition,
            "namespace": state.namespace,
            "name": state.name,
            "revision": state.revision,
            "commitment": state.commitment_wanted,
        },
        "metagraph": {
            "last_sync": _iso(state.last_sync),
            "age_s": _age(state, state.last_sync),
            "block": state.sync_block,
        },
        "commitment": {
            "ok": state.commitment_ok,
            "block": state.commitment_block,
            "last_check": _iso(state.last_commitment_check),
            "last_commit": _iso(state.last_commit),
        },
        "endpoint": {
            "published": state.endpoint_wanted,
            "ok": state.endpoint_ok,
            "last_check": _iso(state.last_endpoint_check),
            "last_serve": _iso(state.last_serve),
        },
        "feedback": {
            "received": state.counter("feedback_total"),
            "last": _iso(state.last_feedback),
        },
        "tasks": state.board.snapshot(),
    }


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    text = ""
    if labels:
        text = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"
    return f"{_PREFIX}{name}{text} {value:.17g}"


def _gauge(out: list[str], name: str, help_: str, value: float | bool | None) -> None:
    if value is None:
        return
    out += [f"# HELP {_PREFIX}{name} {help_}", f"# TYPE {_PREFIX}{name} gauge"]
    out.append(_sample(name, float(value)))


def prometheus_text(state: MinerState) -> str:
    out: list[str] = []
    info = {
        "version": __version__,
        "hotkey": state.hotkey,
        "competition": state.competition,
        "model": f"{state.namespace}/{state.name}",
        "revision": state.revision,
    }
    out += [f"# HELP {_PREFIX}info The miner and its model.", f"# TYPE {_PREFIX}info gauge"]
    out.append(_sample("info", 1, info))
    _gauge(out, "start_time_seconds", "Start time (unix seconds).", state.started_at)
    _gauge(out, "registered", "1 if the hotkey is registered on the subnet.", state.registered)
    _gauge(out, "uid", "Our uid on the subnet.", state.uid)
    _gauge(out, "metagraph_last_sync_seconds", "Last metagraph sync (unix).", state.last_sync)
    _gauge(out, "metagraph_block", "Block of the last metagraph sync.", state.sync_block)
    _gauge(
        out, "commitment_ok", "1 if the chain holds our model's commitment.", state.commitment_ok
    )
    _gauge(out, "commitment_block", "Block our commitment landed in.", state.commitment_block)
    _gauge(
        out,
        "commitment_last_check_seconds",
        "Last commitment check (unix).",
        state.last_commitment_check,
    )
    _gauge(out, "endpoint_ok", "1 if the chain holds our endpoint.", state.endpoint_ok)
    _gauge(out, "last_feedback_seconds", "Last feedback received (unix).", state.last_feedback)
    guard = state.http_guard
    if guard is not None:
        _gauge(out, "http_open_connections", "Open connections on the signed server.", guard.open)
        name = "http_connections_total"
        out += [
            f"# HELP {_PREFIX}{name} Connections on the signed server by outcome (guard counters).",
            f"# TYPE {_PREFIX}{name} counter",
        ]
        out += [_sample(name, v, {"outcome": k}) for k, v in guard.stats.as_dict().items()]
    by_metric: dict[str, list[str]] = {name: [] for name in _HELP}
    for (name, labels), value in sorted(state.counters.items()):
        by_metric.setdefault(name, []).append(_sample(name, value, dict(labels)))
    for name, samples in by_metric.items():
        out += [
            f"# HELP {_PREFIX}{name} {_HELP.get(name, name)}",
            f"# TYPE {_PREFIX}{name} counter",
        ]
        out += samples or [_sample(name, 0)]
    return "\n".join(out) + "\n"
