"""Server-rendered SVG charts: pure functions from plain numbers to markup, no JavaScript.

Every chart is one ``<svg class="chart">`` whose marks carry a class (``bar``, ``seg``, ``pt``)
and their value (``data-value`` / ``data-seconds``), so a test (or a reader of the page source)
can count and check them. Text is escaped; colours come from the stylesheet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "Scale", "Segment", "Strip", "bar_chart", "fmt", "stacked_bars", "strip_chart"]

ROW = 22
"""Height of one bar row, px."""
LABEL_W = 190
"""Width of the label column, px."""
VALUE_W = 70
"""Room right of the plot for the value text, px."""


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}"


def _n(x: float) -> str:
    """A coordinate, rounded to 0.1 px (stable markup, exact tests)."""
    return f"{round(x, 1):g}"


@dataclass(frozen=True, slots=True)
class Scale:
    """Linear map from ``[lo, hi]`` onto pixels ``[x0, x1]``."""

    lo: float
    hi: float
    x0: float
    x1: float

    @classmethod
    def over(cls, values: Sequence[float], x0: float, x1: float) -> Scale:
        """A scale covering the finite ``values`` and zero (so bars start at zero)."""
        finite = [v for v in values if math.isfinite(v)]
        lo, hi = min([0.0, *finite]), max([0.0, *finite])
        if hi - lo < 1e-12:
            hi = lo + 1.0
        return cls(lo, hi, x0, x1)

    def __call__(self, v: float) -> float:
        return self.x0 + (v - self.lo) / (self.hi - self.lo) * (self.x1 - self.x0)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    cls: str = ""
    """Extra CSS class: ``win`` (the winner), ``ref`` ..."""
    note: str = ""
    """Tooltip text."""


def _open(kind: str, title: str, width: int, height: int, count: int) -> str:
    return (
        f'<svg class="chart {kind}" data-count="{count}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    )


def _cls(base: str, extra: str) -> str:
    return escape(f"{base} {extra}" if extra else base)


def _label(text: str, y: float) -> str:
    short = text if len(text) <= 30 else text[:29] + "…"
    return (
        f'<text class="label" x="{LABEL_W - 6}" y="{_n(y)}" text-anchor="end">'
        f"{escape(short)}<title>{escape(text)}</title></text>"
    )


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    reference: float | None = None,
    reference_label: str = "unprocessed",
    width: int = 600,
    empty_text: str = "no model scored",
) -> str:
    """Horizontal bars with 95% CI whiskers and an optional reference line (the unprocessed
    input's average). Bars are ``<rect class="bar">``, one per entry with a finite value."""
    top = 18
    height = top + ROW * max(len(bars), 1) + 18
    values = [b.value for b in bars if b.value is not None]
    values += [v for b in bars for v in (b.low, b.high) if v is not None]
    if reference is not None:
        values.append(reference)
    x = Scale.over(values, LABEL_W, width - VALUE_W)
    count = sum(1 for b in bars if b.value is not None and math.isfinite(b.value))
    out = [_open("bars", title, width, height, count)]
    zero = x(0.0)
    out.append(
        f'<line class="axis" x1="{_n(zero)}" y1="{top - 4}" x2="{_n(zero)}" y2="{height - 14}"/>'
    )
    if not bars:
        out.append(
            f'<text class="tick" x="{LABEL_W + 6}" y="{top + 15}">{escape(empty_text)}</text>'
        )
    for i, b in enumerate(bars):
        y = top + i * ROW
        out.append(_label(b.label, y + ROW / 2 + 4))
        if b.value is None or not math.isfinite(b.value):
            out.append(f'<text class="val" x="{_n(zero + 4)}" y="{_n(y + ROW / 2 + 4)}">n/a</text>')
            continue
        v = x(b.value)
        x0, w = min(zero, v), abs(v - zero)
        ci, whisker = "", ""
        if b.low is not None and b.high is not None:
            ci = f", 95% CI [{fmt(b.low)}, {fmt(b.high)}]"
            cy = _n(y + ROW / 2)
            whisker = (
                f'<line class="ci" x1="{_n(x(b.low))}" y1="{cy}" x2="{_n(x(b.high))}" y2="{cy}"/>'
            )
        tip = f"{b.label}: {fmt(b.value)}{ci}{' · ' + b.note if b.note else ''}"
        out.append(
            f'<rect class="{_cls("bar", b.cls)}" x="{_n(x0)}" y="{_n(y + 4)}" width="{_n(w)}" '
            f'height="{ROW - 8}" data-value="{b.value!r}"><title>{escape(tip)}</title></rect>'
            + whisker
        )
        out.append(
            f'<text class="val" x="{_n(x.x1 + 4)}" y="{_n(y + ROW / 2 + 4)}">{fmt(b.value)}</text>'
        )
    if reference is not None and math.isfinite(reference):
        r = _n(x(reference))
        out.append(
            f'<line class="ref" x1="{r}" y1="{top - 6}" x2="{r}" y2="{height - 14}" '
            f'data-value="{reference!r}"/>'
            f'<text class="ref-label" x="{r}" y="{height - 3}" text-anchor="middle">'
            f"{escape(reference_label)} {fmt(reference)}</text>"
        )
    out.append(
        f'<text class="tick" x="{LABEL_W}" y="{top - 6}">{fmt(x.lo)}</text>'
        f'<text class="tick" x="{_n(x.x1)}" y="{top - 6}" text-anchor="end">{fmt(x.hi)}</text>'
    )
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Segment:
    step: str
    seconds: float
    ok: bool = True


STEP_CLASSES = frozenset(
    [
        "fetch",
        "build",
        "start",
        "status",
        "prepare",
        "upload",
        "enhance",
        "download",
        "reset",
        "outputs",
        "score",
        "teardown",
    ]
)


def _step_class(step: str) -> str:
    return f"s-{step}" if step in STEP_CLASSES else "s-other"


def stacked_bars(
    rows: Sequence[tuple[str, Sequence[Segment]]], *, title: str, width: int = 600
) -> str:
    """One horizontal bar per model, a ``<rect class="seg">`` per step in order, widths
    proportional to seconds on a common scale; a failed step is outlined (class ``fail``)."""
    top = 18
    totals = [sum(max(s.seconds, 0.0) for s in segs) for _, segs in rows]
    x = Scale.over(totals, LABEL_W, width - VALUE_W)
    out: list[str] = []
    seen: list[str] = []
    for i, (label, segs) in enumerate(rows):
        y = top + i * ROW
        out.append(_label(label, y + ROW / 2 + 4))
        at = 0.0
        for s in segs:
            sec = max(s.seconds, 0.0)
            cls = _step_class(s.step) + ("" if s.ok else " fail")
            out.append(
                f'<rect class="seg {cls}" x="{_n(x(at))}" y="{_n(y + 4)}" '
                f'width="{_n(x(at + sec) - x(at))}" height="{ROW - 8}" '
                f'data-step="{escape(s.step)}" data-seconds="{s.seconds!r}"><title>'
                f"{escape(s.step)}: {fmt(s.seconds)} s{'' if s.ok else ' (failed)'}"
                "</title></rect>"
            )
            at += sec
            if s.step not in seen:
                seen.append(s.step)
        out.append(
            f'<text class="val" x="{_n(x(at) + 4)}" y="{_n(y + ROW / 2 + 4)}">{fmt(at, 3)} s</text>'
        )
    lx, ly = float(LABEL_W), top + ROW * max(len(rows), 1) + 14
    for step in seen:
        out.append(
            f'<rect class="key {_step_class(step)}" x="{_n(lx)}" y="{_n(ly - 9)}" width="10" '
            f'height="10"/><text class="tick" x="{_n(lx + 13)}" y="{_n(ly)}">{escape(step)}</text>'
        )
        lx += 18 + 7 * len(step)
        if lx > width - 80:
            lx, ly = float(LABEL_W), ly + 14
    height = int(ly + 6 if lx > LABEL_W else ly - 8)
    out.append(
        f'<text class="tick" x="{LABEL_W}" y="{top - 6}">0 s</text>'
        f'<text class="tick" x="{_n(x.x1)}" y="{top - 6}" text-anchor="end">'
        f"{fmt(x.hi, 3)} s</text></svg>"
    )
    count = sum(len(s) for _, s in rows)
    return _open("timeline", title, width, height, count) + "".join(out)


@dataclass(frozen=True, slots=True)
class Strip:
    label: str
    values: Sequence[float]
    cls: str = ""


def strip_chart(
    rows: Sequence[Strip], *, title: str, reference: float | None = None, width: int = 600
) -> str:
    """Per-file score distributions: one row per model, a ``<circle class="pt">`` per file and
    a ``<line class="mean">`` at the row's mean."""
    top = 18
    height = top + ROW * max(len(rows), 1) + 18
    values = [v for r in rows for v in r.values]
    if reference is not None:
        values.append(reference)
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x = Scale(lo, hi, LABEL_W, width - VALUE_W)
    out = [_open("strips", title, width, height, sum(len(r.values) for r in rows))]
    for i, r in enumerate(rows):
        y = top + i * ROW
        cy = y + ROW / 2
        out.append(_label(r.label, cy + 4))
        out.append(
            f'<line class="grid" x1="{LABEL_W}" y1="{_n(cy)}" x2="{_n(x.x1)}" y2="{_n(cy)}"/>'
        )
        good = [v for v in r.values if math.isfinite(v)]
        for v in r.values:
            px = x(v) if math.isfinite(v) else x.x0
            out.append(
                f'<circle class="{_cls("pt", r.cls)}" cx="{_n(px)}" cy="{_n(cy)}" r="3" '
                f'data-value="{v!r}"><title>{fmt(v)}</title></circle>'
            )
        if good:
            mean = sum(good) / len(good)
            m = _n(x(mean))
            out.append(
                f'<line class="mean" x1="{m}" y1="{_n(y + 3)}" x2="{m}" y2="{_n(y + ROW - 3)}"/>'
                f'<text class="val" x="{_n(x.x1 + 4)}" y="{_n(cy + 4)}">{fmt(mean)}</text>'
            )
    if reference is not None and math.isfinite(reference):
        r_ = _n(x(reference))
        out.append(
            f'<line class="ref" x1="{r_}" y1="{top - 6}" x2="{r_}" y2="{height - 14}"/>'
            f'<text class="ref-label" x="{r_}" y="{height - 3}" text-anchor="middle">'
            f"unprocessed {fmt(reference)}</text>"
        )
    out.append(
        f'<text class="tick" x="{LABEL_W}" y="{top - 6}">{fmt(x.lo)}</text>'
        f'<text class="tick" x="{_n(x.x1)}" y="{top - 6}" text-anchor="end">{fmt(x.hi)}</text>'
        "</svg>"
    )
    return "".join(out)
