"""HTML sections of the dashboard and the epoch report, rendered from a ``/status``-shaped
document (plain dicts). Everything a miner or a chain can influence is escaped."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from ..competitions import get_competition
from ._svg import Bar, Segment, bar_chart, fmt, stacked_bars

__all__ = [
    "candidate_label",
    "candidates_table",
    "epoch_header",
    "health_section",
    "metric_charts",
    "metric_order",
    "table",
    "timeline_section",
    "winners_section",
]


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """Cells are markup: callers escape text with ``html.escape``."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _e(value: Any) -> str:
    return "–" if value is None or value == "" else escape(str(value))


def metric_order(competition: str, names: Iterable[str]) -> list[str]:
    try:
        known = [str(m) for m in get_competition(competition).metrics]
    except KeyError:
        known = []
    names = set(names)
    return [m for m in known if m in names] + sorted(names - set(known))


def candidate_label(c: Mapping[str, Any]) -> str:
    model = str(c.get("model") or "").split("@", 1)[0]
    who = "baseline" if c.get("kind") == "baseline" else f"uid {c.get('uid')}"
    return f"{who} {model}".strip()


def _short_model(model: str | None) -> str:
    if not model:
        return "–"
    head, _, rev = model.partition("@")
    return escape(f"{head}@{rev[:10]}" if rev else head)


def epoch_header(doc: Mapping[str, Any]) -> str:
    ep = doc.get("epoch")
    facts = [("validator", _e(doc.get("hotkey"))), ("head block", _e(doc.get("head_block")))]
    if ep is None:
        facts.append(("epoch", "none yet: waiting for the chain"))
    else:
        facts += [
            ("epoch", f"<b>{ep['number']}</b> ({_e(ep.get('status'))})"),
            ("blocks", f"{ep['start_block']} – {ep['end_block']}"),
            (
                "blocks left",
                "–"
                if ep.get("blocks_left") is None
                else f'<b class="left">{ep["blocks_left"]}</b>',
            ),
            ("seed", _e(ep.get("seed"))),
        ]
    cells = "".join(f"<div><dt>{escape(k)}</dt><dd>{v}</dd></div>" for k, v in facts if v != "–")
    return f'<section id="epoch"><dl class="facts">{cells}</dl></section>'


def _outcome(c: Mapping[str, Any]) -> str:
    if c.get("passed") is True:
        return '<span class="ok">passed</span>'
    if c.get("passed") is False:
        return f'<span class="bad">failed at {_e(c.get("failed_step"))}</span>'
    if c.get("step"):
        return f'<span class="live">running: {_e(c["step"])}</span>'
    return "–"


def candidates_table(candidates: Sequence[Mapping[str, Any]]) -> str:
    if not candidates:
        return (
            '<section id="candidates"><h2>Candidates</h2><p class="empty">no candidates in '
            "this epoch yet</p></section>"
        )
    rows = []
    for c in candidates:
        total = sum(float(s.get("seconds") or 0.0) for s in c.get("steps") or [])
        shared = f" (same as {_e(c['shared_from'])[:12]}…)" if c.get("shared_from") else ""
        rows.append(
            [
                _e(c.get("uid")) if c.get("kind") != "baseline" else "baseline",
                _e(c.get("competition")),
                f'<span title="{_e(c.get("model"))}">{_short_model(c.get("model"))}</span>',
                f'<span class="state st-{_e(c.get("state"))}">{_e(c.get("state"))}</span>',
                _outcome(c),
                _e(c.get("reason")) + shared,
                fmt(total, 3) + " s" if c.get("steps") else "–",
            ]
        )
    body = table(
        ["uid", "competition", "model", "state", "result", "reason", "time"], rows, cls="cands"
    )
    return f'<section id="candidates"><h2>Candidates ({len(candidates)})</h2>{body}</section>'


def _by_competition(
    candidates: Sequence[Mapping[str, Any]], competitions: Sequence[str]
) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {c: [] for c in competitions}
    for c in candidates:
        out.setdefault(str(c.get("competition")), []).append(c)
    return out


def timeline_section(doc: Mapping[str, Any]) -> str:
    parts = []
    for comp, cands in _by_competition(doc.get("candidates") or [], doc["competitions"]).items():
        rows = [
            (
                candidate_label(c),
                [
                    Segment(str(s.get("step")), float(s.get("seconds") or 0.0), bool(s.get("ok")))
                    for s in c["steps"]
                ],
            )
            for c in cands
            if c.get("steps")
        ]
        if rows:
            parts.append(
                f"<h3>{escape(comp)}</h3>"
                + stacked_bars(rows, title=f"{comp}: benchmark steps per model (seconds)")
            )
    body = "".join(parts) or '<p class="empty">no finished benchmarks yet</p>'
    return f'<section id="timeline"><h2>Benchmark steps</h2>{body}</section>'


def _winners_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    j, ep = doc.get("latest_judgement"), doc.get("epoch")
    if j is None or ep is None or j.get("epoch") != ep.get("number"):
        return {}
    winners: Mapping[str, Any] = j.get("winners") or {}
    return winners


def metric_charts(
    doc: Mapping[str, Any], extra: Mapping[tuple[str, str], str] | None = None
) -> str:
    """Per competition and metric: each scored model's average with its 95% CI, the
    unprocessed input as the reference line, the winner highlighted. ``extra`` adds markup
    under a chart (the report's per-file distributions)."""
    winners = _winners_of(doc)
    unprocessed = doc.get("unprocessed") or {}
    parts = []
    for comp, cands in _by_competition(doc.get("candidates") or [], doc["competitions"]).items():
        scored = [c for c in cands if c.get("metrics")]
        ref_doc = unprocessed.get(comp) or {}
        names = metric_order(comp, {m for c in scored for m in c["metrics"]} | set(ref_doc))
        if not names:
            continue
        charts = []
        for metric in names:
            won = (winners.get(comp) or {}).get(metric) or {}
            bars = []
            for c in scored:
                m = c["metrics"].get(metric)
                if m is None:
                    continue
                ci = m.get("confidence_interval") or [None, None]
                is_win = won.get("hotkey") == c.get("hotkey") and c.get("kind") != "baseline"
                bars.append(
                    Bar(
                        candidate_label(c),
                        m.get("average"),
                        ci[0],
                        ci[1],
                        cls=" ".join(
                            x
                            for x in (
                                "win" if is_win else "",
                                "" if c.get("passed") else "fail",
                                "base" if c.get("kind") == "baseline" else "",
                            )
                            if x
                        ),
                        note="winner" if is_win else "",
                    )
                )
            ref = (ref_doc.get(metric) or {}).get("average")
            chart = bar_chart(bars, title=f"{comp} {metric}", reference=ref)
            charts.append(
                f'<figure class="metric"><figcaption>{escape(metric)}</figcaption>{chart}'
                f"{(extra or {}).get((comp, metric), '')}</figure>"
            )
        parts.append(f"<h3>{escape(comp)}</h3>" + "".join(charts))
    body = "".join(parts) or '<p class="empty">no scores yet</p>'
    return f'<section id="metrics"><h2>Scores (mean, 95% CI)</h2>{body}</section>'


def winners_section(judgement: Mapping[str, Any] | None, uids: Mapping[str, Any]) -> str:
    if judgement is None:
        return (
            '<section id="winners"><h2>Winners and weights</h2><p class="empty">no epoch '
            "judged yet</p></section>"
        )
    rows = []
    for comp, by_metric in sorted((judgement.get("winners") or {}).items()):
        for metric in metric_order(comp, by_metric):
            w = by_metric[metric]
            rows.append(
                [
                    escape(comp),
                    escape(metric),
                    _e(w["uid"] if w.get("uid") is not None else uids.get(w.get("hotkey"))),
                    f'<span class="hk">{_e(w.get("hotkey"))}</span>',
                    fmt(w.get("average")),
                    _e(w.get("block")),
                ]
            )
    winners = (
        table(["competition", "metric", "uid", "hotkey", "average", "commit block"], rows)
        if rows
        else '<p class="empty">no winners: nobody beat the unprocessed input</p>'
    )
    weights = judgement.get("weights") or {}
    wbars = [
        Bar(f"uid {u}", float(w))
        for u, w in sorted(weights.items(), key=lambda kv: (-float(kv[1]), int(kv[0])))
    ]
    chart = (
        bar_chart(wbars, title=f"weights after epoch {judgement.get('epoch')}")
        if wbars
        else '<p class="empty">no weights set from this epoch</p>'
    )
    return (
        f'<section id="winners"><h2>Winners and weights (epoch {_e(judgement.get("epoch"))})'
        f"</h2>{winners}<h3>Weights</h3>{chart}</section>"
    )


def health_section(doc: Mapping[str, Any]) -> str:
    h = doc.get("health") or {}
    lag = h.get("loop_lag") or {}
    status = str(h.get("status", "unknown"))
    facts = (
        f'<dl class="facts"><div><dt>status</dt><dd><span class="pill {escape(status)}">'
        f"{escape(status)}</span></dd></div>"
        + "".join(
            f"<div><dt>loop lag {q}</dt><dd>{_ms(lag.get(q + '_s'))}</dd></div>"
            for q in ("last", "p50", "p99", "max")
        )
        + f"<div><dt>uptime</dt><dd>{fmt(h.get('uptime_s'), 6)} s</dd></div></dl>"
    )
    rows = [
        [
            escape(name),
            escape(str(t.get("state"))),
            fmt(t.get("last_tick_age_s"), 3) + " s"
            if t.get("last_tick_age_s") is not None
            else "–",
            '<span class="bad">stale</span>' if t.get("stale") else '<span class="ok">ok</span>',
            _e(t.get("failures")),
            _e(t.get("restarts")),
            _e(t.get("last_error")),
        ]
        for name, t in (h.get("tasks") or {}).items()
    ]
    tasks = table(
        ["task", "state", "last tick", "health", "failures", "restarts", "last error"],
        rows,
        cls="tasks",
    )
    attempts = doc.get("weight_attempts") or []
    wrows = [
        [_e(a.get("epoch")), _e(a.get("block")), _e(a.get("status")), _e(a.get("reason"))]
        for a in attempts
    ]
    queue = doc.get("feedback_queue") or {}
    q = ", ".join(f"{escape(str(k))} {v}" for k, v in sorted(queue.items())) or "empty"
    return (
        f'<section id="health"><h2>Health</h2>{facts}{tasks}<h3>Weight attempts</h3>'
        + (table(["epoch", "block", "status", "reason"], wrows) if wrows else "<p>none yet</p>")
        + f"<p>Feedback queue: {q}</p></section>"
    )


def _ms(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "–"
    return f"{seconds * 1000:.1f} ms"
