"""The validator's dashboard: the SVG chart functions (exact geometry), the status server's
HTML routes and headers, and the page in a real headless Chromium (no console errors, the right
number of bars, live refresh) for a full epoch, an empty one, one where every model failed, and
a daemon with no epoch yet. Screenshots go to ``tests/artifacts/``."""

from __future__ import annotations

import asyncio
import re
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import dashboard_data as dd
import numpy as np
import pytest
from aiohttp import web
from browser import Browser, artifacts_dir, launch_browser

from soundsright_async.dashboard import Bar, Segment, bar_chart, png_bytes, stacked_bars
from soundsright_async.dashboard._png import colormap, spectrogram_image
from soundsright_async.dashboard._svg import Scale
from soundsright_async.validator._state import ValidatorState
from soundsright_async.validator._status import CSP, status_app
from soundsright_async.validator._store import Store


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser()


@asynccontextmanager
async def serve(state: ValidatorState, store: Store, refresh_s: float = 5.0) -> AsyncIterator[str]:
    runner = web.AppRunner(status_app(state, store, refresh_s=refresh_s))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await store.aclose()


# -- charts: exact geometry ---------------------------------------------------------------------


def _attrs(svg: str, cls: str) -> list[dict[str, str]]:
    return [
        dict(re.findall(r'([\w-]+)="([^"]*)"', m))
        for m in re.findall(rf'<\w+ class="{cls}(?: [^"]*)?"[^>]*>', svg)
    ]


def test_scale_covers_zero_and_the_values() -> None:
    x = Scale.over([2.5, -1.0, float("nan")], 100, 300)
    assert (x.lo, x.hi) == (-1.0, 2.5)
    assert x(-1.0) == 100
    assert x(2.5) == 300
    assert x(0.0) == pytest.approx(100 + 200 / 3.5)
    assert Scale.over([], 0, 10).hi == 1.0  # no values: a unit scale, never a zero division


def test_bar_chart_geometry_ci_and_reference() -> None:
    svg = bar_chart(
        [Bar("uid 1", 2.5, 2.3, 2.7, cls="win"), Bar("uid 2", 2.1, 1.9, 2.3)],
        title="DENOISING_16000HZ PESQ",
        reference=1.8,
    )
    # scale 0 .. 2.7 onto x 190 .. 530
    bars = _attrs(svg, "bar")
    assert [(b["x"], b["width"], b["data-value"]) for b in bars] == [
        ("190", "314.8", "2.5"),
        ("190", "264.4", "2.1"),
    ]
    assert bars[0]["class"] == "bar win"
    assert [(c["x1"], c["x2"]) for c in _attrs(svg, "ci")] == [("479.6", "530"), ("429.3", "479.6")]
    (ref,) = _attrs(svg, "ref")
    assert (ref["x1"], ref["data-value"]) == ("416.7", "1.8")
    assert 'data-count="2"' in svg
    assert "unprocessed 1.8</text>" in svg


def test_bar_chart_negative_values_grow_left_of_zero() -> None:
    svg = bar_chart([Bar("a", -5.0), Bar("b", 10.0), Bar("c", None)], title="SI_SDR")
    # scale -5 .. 10 onto 190 .. 530: zero at 303.3
    assert [(b["x"], b["width"]) for b in _attrs(svg, "bar")] == [
        ("190", "113.3"),
        ("303.3", "226.7"),
    ]
    assert 'data-count="2"' in svg
    assert ">n/a</text>" in svg


def test_chart_text_is_escaped() -> None:
    svg = bar_chart([Bar('<script>alert("x")</script>', 1.0)], title="t<i>")
    assert "<script>" not in svg
    assert "<i>" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in svg


def test_empty_bar_chart_says_so() -> None:
    svg = bar_chart([], title="PESQ", reference=1.8)
    assert 'data-count="0"' in svg
    assert "no model scored" in svg
    assert 'class="ref"' in svg


def test_stacked_bars_widths_follow_seconds_and_mark_the_failed_step() -> None:
    svg = stacked_bars(
        [
            ("m1", [Segment("build", 10.0), Segment("enhance", 30.0)]),
            ("m2", [Segment("build", 20.0, ok=False)]),
        ],
        title="steps",
    )
    segs = _attrs(svg, "seg")
    # 0 .. 40 s onto 190 .. 530
    assert [(s["x"], s["width"], s["data-step"]) for s in segs] == [
        ("190", "85", "build"),
        ("275", "255", "enhance"),
        ("190", "170", "build"),
    ]
    assert [s["class"] for s in segs] == ["seg s-build", "seg s-enhance", "seg s-build fail"]
    assert 'data-count="3"' in svg


# -- PNG and spectrograms -------------------------------------------------------------------------


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[y * (3 * w + 1) : (y + 1) * (3 * w + 1)] for y in range(h)]
    assert all(r[0] == 0 for r in rows)
    return np.frombuffer(b"".join(r[1:] for r in rows), np.uint8).reshape(h, w, 3)


def test_png_round_trips_pixels() -> None:
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(_decode_png(png_bytes(img)), img)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(img.astype(np.float32))  # type: ignore[arg-type]


def test_colormap_anchors_and_clipping() -> None:
    got = colormap(np.array([0.0, 0.125, 1.0, 1.5, -1.0]))
    assert got.tolist() == [[68, 1, 84], [64, 42, 112], [253, 231, 37], [253, 231, 37], [68, 1, 84]]


def test_spectrogram_puts_a_tone_at_its_frequency_row() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    img = spectrogram_image(np.sin(2 * np.pi * 2000 * t), rate)
    # nperseg 256, hop 128: 129 bins and 124 frames -> 120 rows (bottom = 0 Hz) x 124 columns
    assert img.shape == (120, 124, 3)
    brightness = img.astype(int).sum(axis=2).mean(axis=1)
    row_from_bottom = 119 - int(brightness.argmax())
    assert abs(row_from_bottom - round(2000 / 8000 * 119)) <= 1


# -- routes -----------------------------------------------------------------------------------


async def test_routes_headers_and_status_additions(tmp_path: Path) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "full")
    async with serve(state, store) as base, aiohttp.ClientSession() as http:
        async with http.get(base + "/") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/html; charset=utf-8"
            assert r.headers["Content-Security-Policy"] == CSP
            assert r.headers["Content-Encoding"] in {"gzip", "deflate"}
            page = await r.text()
        assert '<script src="static/app.js" defer></script>' in page
        assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from outside
        async with http.get(base + "/static/app.js") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert b'fetch("panel"' in await r.read()
        for bad in ("/static/nope.js", "/static/..%2f_status.py", "/static/__init__.py"):
            async with http.get(base + bad) as r:
                assert r.status == 404, bad
        async with http.get(base + "/panel") as r:
            panel = await r.text()
        assert panel.count('<rect class="bar') == 6  # 2 per metric chart + 2 weights
        assert panel.count('<rect class="seg') == 22
        async with http.get(base + "/status") as r:
            doc = await r.json()
    assert doc["latest_judgement"]["winners"][dd.COMP]["PESQ"] == {
        "hotkey": dd.HOTKEYS[1],
        "block": 601,
        "average": 2.5,
        "uid": 1,
    }
    assert doc["latest_judgement"]["weights"] == {"1": 0.6, "2": 0.4}
    assert [c["running_s"] for c in doc["candidates"]] == [None] * 4
    assert isinstance(doc["generated_at"], float)
    assert doc["epoch"]["blocks_left"] == 50


async def test_status_and_metrics_show_the_engines(tmp_path: Path) -> None:
    from soundsright_async.sandbox.runner import EngineLoad

    store, state = await dd.build(tmp_path / "v.sqlite", "full")
    state.engines = lambda: [EngineLoad("one", 2, 3, True), EngineLoad("two", 1, 0, False)]
    async with serve(state, store) as base, aiohttp.ClientSession() as http:
        async with http.get(base + "/status") as r:
            doc = await r.json()
        async with http.get(base + "/metrics") as r:
            text = await r.text()
    assert doc["engines"] == [
        {"name": "one", "slots": 2, "models": 3, "up": True},
        {"name": "two", "slots": 1, "models": 0, "up": False},
    ]
    for line in (
        'soundsright_engine_up{engine="one"} 1.0',
        'soundsright_engine_up{engine="two"} 0.0',
        'soundsright_engine_models{engine="one"} 3.0',
        'soundsright_engine_models{engine="two"} 0.0',
    ):
        assert line in text.splitlines(), line


async def test_running_candidate_shows_its_live_step_and_time(tmp_path: Path) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "full")
    now = state.now()
    state.running[(dd.HOTKEYS[4], dd.COMP)] = {
        "epoch": dd.EPOCH,
        "step": "benchmark",
        "since": now - 12,
    }
    async with serve(state, store) as base, aiohttp.ClientSession() as http:
        async with http.get(base + "/status") as r:
            (dan,) = [c for c in (await r.json())["candidates"] if c["uid"] == 4]
        async with http.get(base + "/panel") as r:
            panel = await r.text()
    assert dan["step"] == "benchmark"
    assert 12 <= dan["running_s"] < 20
    assert '<span class="live">running: benchmark</span>' in panel


# -- the page in a real browser -----------------------------------------------------------------


async def _check_page(browser: Browser, url: str, shot: str) -> tuple[object, dict[str, int]]:
    page = await browser.open(url)
    counts = {
        sel: await page.count(sel)
        for sel in (
            "#metrics svg.chart",
            "#metrics rect.bar",
            "#metrics rect.bar.win",
            "#metrics line.ref",
            "#timeline rect.seg",
            "#timeline rect.seg.fail",
            "#winners rect.bar",
            "#candidates tbody tr",
            "#health tbody tr",
        )
    }
    await page.screenshot(artifacts_dir() / shot)
    return page, counts


async def test_dashboard_full_epoch_in_chromium(browser: Browser, tmp_path: Path) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "full")
    async with serve(state, store, refresh_s=0.5) as base:
        page, counts = await _check_page(browser, base + "/", "dashboard-full.png")
        try:
            assert counts == {
                "#metrics svg.chart": 2,
                "#metrics rect.bar": 4,
                "#metrics rect.bar.win": 2,
                "#metrics line.ref": 2,
                "#timeline rect.seg": 22,
                "#timeline rect.seg.fail": 1,
                "#winners rect.bar": 2,
                "#candidates tbody tr": 4,
                "#health tbody tr": 4,  # 3 tasks + 1 weight attempt
            }
            assert await page.eval("document.querySelector('.left').textContent") == "50"
            # the page refreshes itself: a new result appears without a reload
            await store.save_result(
                dd.result(
                    4,
                    passed=True,
                    steps=dd.STEPS_OK,
                    metrics=dd.dataset_score((1.9, 2.1), (0.6, 0.66)),
                )
            )
            for _ in range(40):
                if await page.count("#metrics rect.bar") == 6:
                    break
                await asyncio.sleep(0.25)
            assert await page.count("#metrics rect.bar") == 6
            assert (await page.eval("document.getElementById('updated').textContent")).startswith(
                "updated"
            )
            assert page.errors == []
        finally:
            await page.close()


async def test_dashboard_empty_epoch_in_chromium(browser: Browser, tmp_path: Path) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "empty")
    async with serve(state, store) as base:
        page, counts = await _check_page(browser, base + "/", "dashboard-empty.png")
        try:
            assert counts["#metrics rect.bar"] == 0
            assert counts["#timeline rect.seg"] == 0
            assert counts["#metrics svg.chart"] == 0
            assert counts["#candidates tbody tr"] == 0
            text = await page.eval("document.body.innerText")
            assert "no candidates in this epoch yet" in text
            assert "no epoch judged yet" in text
            assert page.errors == []
        finally:
            await page.close()


async def test_dashboard_every_model_failed_in_chromium(browser: Browser, tmp_path: Path) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "failed")
    async with serve(state, store) as base:
        page, counts = await _check_page(browser, base + "/", "dashboard-failed.png")
        try:
            assert counts == {
                "#metrics svg.chart": 2,
                "#metrics rect.bar": 0,
                "#metrics rect.bar.win": 0,
                "#metrics line.ref": 2,
                "#timeline rect.seg": 10,
                "#timeline rect.seg.fail": 3,
                "#winners rect.bar": 0,
                "#candidates tbody tr": 3,
                "#health tbody tr": 3,
            }
            text = await page.eval("document.body.innerText")
            assert "failed at fetch" in text
            assert "failed at enhance" in text
            assert "nobody beat the unprocessed input" in text
            assert page.errors == []
        finally:
            await page.close()


async def test_dashboard_before_the_first_epoch_in_chromium(
    browser: Browser, tmp_path: Path
) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "none")
    async with serve(state, store) as base:
        page, counts = await _check_page(browser, base + "/", "dashboard-none.png")
        try:
            assert sum(counts.values()) == 3  # the three task rows
            assert "none yet: waiting for the chain" in await page.eval("document.body.innerText")
            assert page.errors == []
        finally:
            await page.close()
