"""Whole pages: the live dashboard (``GET /``, its panel ``GET /panel``) and the static,
self-contained documents (epoch report, miner Feedback view) that inline the same stylesheet."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from html import escape
from importlib import resources
from typing import Any

from ._sections import (
    candidates_table,
    epoch_header,
    health_section,
    metric_charts,
    timeline_section,
    winners_section,
)

__all__ = ["STATIC", "dashboard_page", "panel", "standalone_page", "static_asset"]

STATIC: dict[str, str] = {"style.css": "text/css", "app.js": "text/javascript"}
"""The only files ``/static/`` serves (name -> content type)."""


@functools.cache
def static_asset(name: str) -> bytes:
    """A file under ``static/`` (read once: the status server serves it from memory)."""
    if name not in STATIC:
        raise KeyError(name)
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _uids(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(c["hotkey"]): c.get("uid")
        for c in doc.get("candidates") or []
        if c.get("kind") != "baseline"
    }


def panel(doc: Mapping[str, Any]) -> str:
    """The dashboard's body, re-fetched every few seconds by ``app.js``."""
    return "".join(
        (
            epoch_header(doc),
            candidates_table(doc.get("candidates") or []),
            timeline_section(doc),
            metric_charts(doc),
            winners_section(doc.get("latest_judgement"), _uids(doc)),
            health_section(doc),
        )
    )


def dashboard_page(doc: Mapping[str, Any], *, refresh_s: float = 5.0) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>SoundsRight validator</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="static/style.css">'
        '<script src="static/app.js" defer></script></head><body>'
        '<header><h1>SoundsRight validator</h1><span id="updated">'
        f"rendered {_now()}</span></header>"
        f'<main id="panel" data-refresh-s="{refresh_s:g}">{panel(doc)}</main></body></html>'
    )


def standalone_page(title: str, body: str, *, subtitle: str = "") -> str:
    """A single self-contained file: inline stylesheet, no script, images as ``data:`` URIs."""
    css = static_asset("style.css").decode()
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{css}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><span id="updated">{escape(subtitle)}'
        f"{' · ' if subtitle else ''}generated {_now()}</span></header>"
        f"<main>{body}</main></body></html>"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
