"""``soundsright report --epoch N``: one self-contained HTML page of what this validator judged.

The same sections as the dashboard (candidates, step timeline, metric charts with 95% CIs against
the unprocessed input, winners and weights), plus per-file score distributions from the stored
per-file scores, and per competition a spectrogram pair (degraded input, clean reference) of one
sample file from the epoch's dataset while the validator still keeps it. The store is read in its
own thread; the page (spectrograms included) is rendered in another thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import anyio

from .._exceptions import InputError
from ..audio.dataset.store import CLEAN_DIR, DEGRADED_DIR
from ..competitions import COMPETITIONS
from ..dashboard import Strip, data_uri, spectrogram_png, standalone_page, strip_chart
from ..dashboard._sections import (
    candidate_label,
    candidates_table,
    epoch_header,
    metric_charts,
    metric_order,
    table,
    timeline_section,
    winners_section,
)
from ._status import candidates_doc, judgement_doc, summary
from ._store import Store

__all__ = ["build_report", "render_report", "report_document"]


async def report_document(
    store: Store, number: int, samples_dir: Path | None = None
) -> dict[str, Any]:
    """Everything the report shows, read from the store (per-file scores included).
    ``samples_dir`` holds enhanced samples kept by the runner, when it keeps them."""
    epoch = await store.epoch(number)
    if epoch is None:
        known = [e.number for e in await store.epochs()]
        have = f"epochs in the store: {known[0]}–{known[-1]}" if known else "the store is empty"
        raise InputError(f"no epoch {number} in {store.path} ({have})")
    cands = await candidates_doc(store, number)
    results = await store.results(number)
    unprocessed = await store.unprocessed(number)
    known_order = [c.name for c in COMPETITIONS]
    comps = set(epoch.datasets) | {c["competition"] for c in cands} | set(unprocessed)
    competitions = [c for c in known_order if c in comps] + sorted(comps - set(known_order))
    return {
        "hotkey": None,
        "head_block": None,
        "competitions": competitions,
        "epoch": {
            "number": epoch.number,
            "start_block": epoch.start_block,
            "end_block": epoch.end_block,
            "blocks_left": None,
            "seed": epoch.seed,
            "start_hash": epoch.start_hash,
            "status": epoch.status,
        },
        "datasets": dict(epoch.datasets),
        "candidates": cands,
        "rejections": await store.rejections(number),
        "unprocessed": {c: summary(m) for c, m in unprocessed.items()},
        "latest_judgement": await judgement_doc(store, number),
        "weight_attempts": [a for a in await store.weight_attempts(200) if a["epoch"] == number],
        "per_file": {
            (r.hotkey, r.competition): (r.metrics or {}).get("metrics", {}) for r in results
        },
        "unprocessed_per_file": {c: m.get("metrics", {}) for c, m in unprocessed.items()},
        "samples_dir": None if samples_dir is None else str(samples_dir),
    }


def _scores(metric: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in ((metric or {}).get("scores") or {}).items()}


def _distributions(doc: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(competition, metric) -> a strip chart of every model's per-file scores."""
    winners = (doc.get("latest_judgement") or {}).get("winners") or {}
    out: dict[tuple[str, str], str] = {}
    for comp in doc["competitions"]:
        cands = [c for c in doc["candidates"] if c["competition"] == comp and c.get("metrics")]
        ref_all = doc["unprocessed_per_file"].get(comp, {})
        for metric in metric_order(comp, {m for c in cands for m in c["metrics"]} | set(ref_all)):
            won = (winners.get(comp) or {}).get(metric) or {}
            rows = []
            for c in cands:
                per_file = _scores(doc["per_file"].get((c["hotkey"], comp), {}).get(metric))
                if per_file:
                    cls = "win" if won.get("hotkey") == c["hotkey"] else ""
                    rows.append(Strip(candidate_label(c), list(per_file.values()), cls))
            ref = _scores(ref_all.get(metric))
            if ref:
                rows.append(Strip("unprocessed input", list(ref.values()), "unproc"))
            if rows:
                out[(comp, metric)] = strip_chart(
                    rows, title=f"{comp} {metric} per file", width=600
                )
    return out


def _spectrograms(doc: Mapping[str, Any], max_seconds: float = 6.0) -> str:
    import numpy as np
    import soundfile as sf

    winners = (doc.get("latest_judgement") or {}).get("winners") or {}
    parts = []
    for comp in doc["competitions"]:
        path = doc["datasets"].get(comp)
        if not path:
            continue
        clean_dir, degraded_dir = Path(path) / CLEAN_DIR, Path(path) / DEGRADED_DIR
        names = (
            sorted(p.name for p in degraded_dir.glob("*.wav") if (clean_dir / p.name).is_file())
            if degraded_dir.is_dir()
            else []
        )
        if not names:
            parts.append(
                f"<h3>{escape(comp)}</h3><p class='empty'>the dataset ({escape(path)}) is no "
                "longer on disk: the validator keeps it only until the epoch is judged</p>"
            )
            continue
        name = names[0]
        figs = []
        sources = [("degraded input", degraded_dir / name), ("clean reference", clean_dir / name)]
        sample = _winner_sample(doc, comp)
        if sample is not None:
            sources.insert(1, sample)
        for label, wav in sources:
            data, rate = sf.read(str(wav), dtype="float64", always_2d=False)
            data = np.asarray(data)[: int(rate * max_seconds)]
            figs.append(
                f'<figure><img alt="{escape(label)} spectrogram" class="spec" '
                f'src="{data_uri(spectrogram_png(data, int(rate)))}"><figcaption>'
                f"{escape(label)}</figcaption></figure>"
            )
        lines = []
        by_metric = winners.get(comp) or {}
        for metric in metric_order(comp, by_metric):
            w = by_metric[metric]
            score = _scores(doc["per_file"].get((w.get("hotkey"), comp), {}).get(metric)).get(name)
            ref = _scores(doc["unprocessed_per_file"].get(comp, {}).get(metric)).get(name)
            lines.append(
                f"{escape(metric)} winner uid {escape(str(w.get('uid', '?')))}: "
                f"{_f(score)} on this file (unprocessed {_f(ref)})"
            )
        note = "<br>".join(lines) or "no winner this epoch"
        parts.append(
            f"<h3>{escape(comp)}: {escape(name)}</h3><p>{note}</p>"
            f'<div class="specs">{"".join(figs)}</div>'
        )
    body = "".join(parts) or '<p class="empty">no datasets recorded for this epoch</p>'
    return (
        '<section id="spectrograms"><h2>Sample file spectrograms</h2><p>What the models were '
        "given and what they were scored against, and the winner's enhanced output when the "
        f"runner kept a sample of it.</p>{body}</section>"
    )


def _winner_sample(doc: Mapping[str, Any], comp: str) -> tuple[str, Path] | None:
    """The enhanced sample the runner kept for the winner of the competition's first metric:
    ``SAMPLES/<epoch>/<competition>/<content_hash>.wav`` (see docs/dashboard.md)."""
    samples, by_metric = (
        doc.get("samples_dir"),
        ((doc.get("latest_judgement") or {}).get("winners") or {}).get(comp) or {},
    )
    order = metric_order(comp, by_metric)
    if not samples or not order:
        return None
    hotkey = by_metric[order[0]].get("hotkey")
    for c in doc["candidates"]:
        if c["hotkey"] == hotkey and c["competition"] == comp and c.get("content_hash"):
            path = Path(samples) / str(doc["epoch"]["number"]) / comp / f"{c['content_hash']}.wav"
            if path.is_file():
                return f"winner's output (uid {c['uid']}, {order[0]} winner)", path
    return None


def _f(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _rejections(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    body = table(
        ["uid", "competition", "reason", "detail"],
        [
            [
                escape(str(r.get("uid"))),
                escape(r["competition"]),
                escape(r["reason"]),
                escape(r.get("detail") or ""),
            ]
            for r in rows
        ],
    )
    return f'<section id="rejections"><h2>Rejected commitments</h2>{body}</section>'


def render_report(doc: Mapping[str, Any], *, spectrograms: bool = True) -> str:
    """The report page (blocking: spectrograms read audio; run it in a thread)."""
    uids = {c["hotkey"]: c["uid"] for c in doc["candidates"] if c.get("kind") != "baseline"}
    attempts = doc.get("weight_attempts") or []
    weights = (
        '<section id="weight-attempts"><h2>Weight attempts</h2>'
        + table(
            ["block", "status", "reason"],
            [
                [escape(str(a.get("block"))), escape(a["status"]), escape(a["reason"])]
                for a in attempts
            ],
        )
        + "</section>"
        if attempts
        else ""
    )
    body = "".join(
        (
            epoch_header(doc),
            candidates_table(doc["candidates"]),
            timeline_section(doc),
            metric_charts(doc, _distributions(doc)),
            winners_section(doc.get("latest_judgement"), uids),
            weights,
            _rejections(doc.get("rejections") or []),
            _spectrograms(doc) if spectrograms else "",
        )
    )
    number = doc["epoch"]["number"]
    return standalone_page(f"SoundsRight epoch {number}", body, subtitle="validator report")


async def build_report(
    store: Store, number: int, out: Path, samples_dir: Path | None = None
) -> Path:
    """Write ``out/epoch-N.html``; the path written."""
    doc = await report_document(store, number, samples_dir)
    text = await anyio.to_thread.run_sync(render_report, doc)
    target = out / f"epoch-{number}.html"

    def write() -> None:
        out.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".html.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)

    await anyio.to_thread.run_sync(write)
    return target
