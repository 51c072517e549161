"""The miner's HTML view of its Feedback: per competition and metric, its mean (95% CI) against
the winner's score in every epoch it has Feedback for (``soundsright feedback show --html``)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from ..miner.feedback import FeedbackRecord
from ._page import standalone_page
from ._sections import metric_order, table
from ._svg import Bar, bar_chart, fmt

__all__ = ["feedback_history", "feedback_page"]


def feedback_history(records: Sequence[FeedbackRecord]) -> dict[str, list[dict[str, Any]]]:
    """Competition -> one entry per epoch (oldest first) from the latest record of that epoch:
    our mean and CI and the winner's score by metric, how many validators reported."""
    latest: dict[tuple[str, int], FeedbackRecord] = {}
    validators: dict[tuple[str, int], set[str]] = {}
    for r in records:
        key = (r.feedback.competition, r.feedback.epoch)
        validators.setdefault(key, set()).add(r.validator)
        if key not in latest or r.received_at >= latest[key].received_at:
            latest[key] = r
    out: dict[str, list[dict[str, Any]]] = {}
    for (comp, epoch), r in sorted(latest.items()):
        fb, res = r.feedback, r.feedback.result
        names = set(fb.winners) | (set(res.metrics) if res else set())
        metrics = {}
        for m in metric_order(comp, names):
            ours, win = (res.metrics.get(m) if res else None), fb.winners.get(m)
            metrics[m] = {
                "ours": None if ours is None else ours.mean,
                "ci_low": None if ours is None else ours.ci_low,
                "ci_high": None if ours is None else ours.ci_high,
                "winner": None if win is None else win.score,
                "winner_uid": None if win is None else win.uid,
                "we_won": bool(res and win and win.hotkey == res.hotkey),
            }
        out.setdefault(comp, []).append(
            {
                "epoch": epoch,
                "validators": len(validators[(comp, epoch)]),
                "model": None
                if res is None
                else f"{res.hf_model_name}@{res.hf_model_revision[:8]}",
                "valid": None if res is None else res.valid,
                "reason": None if res is None else res.reason,
                "metrics": metrics,
            }
        )
    return out


def _section(comp: str, epochs: list[dict[str, Any]]) -> str:
    names = metric_order(comp, {m for e in epochs for m in e["metrics"]})
    charts = []
    for m in names:
        bars = []
        for e in epochs:
            v = e["metrics"].get(m)
            if v is None:
                continue
            if v["ours"] is not None:
                bars.append(
                    Bar(
                        f"epoch {e['epoch']} · you",
                        v["ours"],
                        v["ci_low"],
                        v["ci_high"],
                        cls="win" if v["we_won"] else ("" if e["valid"] else "fail"),
                        note="you won" if v["we_won"] else "",
                    )
                )
            if v["winner"] is not None and not v["we_won"]:
                bars.append(Bar(f"epoch {e['epoch']} · winner", v["winner"], cls="base"))
        charts.append(
            f'<figure class="metric"><figcaption>{escape(m)}</figcaption>'
            f"{bar_chart(bars, title=f'{comp} {m}: you vs the winner')}</figure>"
        )
    rows = []
    for e in reversed(epochs):
        state = (
            "no submission"
            if e["valid"] is None
            else (
                '<span class="ok">valid</span>'
                if e["valid"]
                else f'<span class="bad">invalid: {escape(str(e["reason"]))}</span>'
            )
        )
        cells = [str(e["epoch"]), escape(e["model"] or "–"), state, str(e["validators"])]
        for m in names:
            v = e["metrics"].get(m) or {}
            gap = (
                v["ours"] - v["winner"]
                if v.get("ours") is not None and v.get("winner") is not None
                else None
            )
            won = " ★" if v.get("we_won") else ""
            cells.append(f"{fmt(v.get('ours'))} / {fmt(v.get('winner'))} ({fmt(gap, 3)}){won}")
        rows.append(cells)
    head = ["epoch", "model", "result", "validators"] + [f"{m} you / winner (gap)" for m in names]
    return (
        f'<section class="competition"><h2>{escape(comp)}</h2>{"".join(charts)}'
        f"{table(head, rows)}</section>"
    )


def feedback_page(records: Sequence[FeedbackRecord], *, source: str) -> str:
    history = feedback_history(records)
    body = "".join(_section(c, e) for c, e in sorted(history.items()))
    if not body:
        body = f'<section><p class="empty">no feedback yet in {escape(source)}</p></section>'
    return standalone_page("SoundsRight miner feedback", body, subtitle=source)
