"""HTML views of the competition: the validator's live dashboard, its epoch report and the
miner's Feedback page. Pure functions from plain documents to markup; charts are SVG rendered
here (``_svg``), spectrograms inline PNG (``_png``), one stylesheet and one small script under
``static/`` (package data). Nothing is loaded from outside the package."""

from __future__ import annotations

from ._page import STATIC, dashboard_page, panel, standalone_page, static_asset
from ._png import data_uri, png_bytes, spectrogram_png
from ._svg import Bar, Segment, Strip, bar_chart, stacked_bars, strip_chart

__all__ = [
    "STATIC",
    "Bar",
    "Segment",
    "Strip",
    "bar_chart",
    "dashboard_page",
    "data_uri",
    "panel",
    "png_bytes",
    "spectrogram_png",
    "stacked_bars",
    "standalone_page",
    "static_asset",
    "strip_chart",
]
