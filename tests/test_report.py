"""``soundsright report --epoch N`` and ``soundsright feedback show --html``: the static pages
from a store written with ``Store`` (and a feedback.jsonl written with ``FeedbackStore``), their
content, and the pages opened in a real headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import anyio
import dashboard_data as dd
import pytest
from browser import Browser, artifacts_dir, launch_browser
from test_dashboard import _decode_png

from soundsright_async._exceptions import InputError
from soundsright_async.cli import main
from soundsright_async.dashboard.feedback import feedback_history
from soundsright_async.miner.feedback import FeedbackRecord, FeedbackStore
from soundsright_async.protocol import FeedbackRequest, MetricStats, MinerResult, Winner
from soundsright_async.validator._epoch_report import build_report, report_document


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser()


async def _report(tmp_path: Path, scenario: str, *, keep_dataset: bool = True) -> tuple[Path, str]:
    ds = dd.write_dataset(tmp_path / "dataset")
    store, _ = await dd.build(tmp_path / "data" / "validator.sqlite", scenario, ds)
    try:
        if not keep_dataset:
            shutil.rmtree(ds)
        out = await build_report(store, dd.EPOCH, tmp_path / "out")
    finally:
        await store.aclose()
    return out, out.read_text()


def _self_contained(html: str) -> None:
    assert "<script" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # every resource is inline


async def test_report_of_a_judged_epoch(tmp_path: Path) -> None:
    out, html = await _report(tmp_path, "full")
    assert out == tmp_path / "out" / "epoch-7.html"
    _self_contained(html)
    assert "<title>SoundsRight epoch 7</title>" in html
    assert html.count('<rect class="bar') == 6  # PESQ 2 + ESTOI 2 + weights 2
    # per-file distributions: alice, bob and the unprocessed input, 2 files each, per metric
    assert html.count('<circle class="pt') == 12
    assert html.count('<circle class="pt unproc"') == 4
    assert html.count('<circle class="pt win"') == 4
    assert 'data-value="2.4"' in html
    assert 'data-value="2.6"' in html
    # one spectrogram pair of the first file, decodable PNGs of 124 frames x 120 bins
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == 2
    assert [_decode_png(base64.b64decode(i)).shape for i in imgs] == [(120, 124, 3)] * 2
    assert "DENOISING_16000HZ: 0000.wav" in html
    assert "PESQ winner uid 1: 2.4 on this file (unprocessed 1.7)" in html
    assert "ESTOI winner uid 1: 0.78 on this file (unprocessed 0.58)" in html


async def test_report_shows_the_winners_kept_sample(tmp_path: Path) -> None:
    ds = dd.write_dataset(tmp_path / "dataset")
    samples = tmp_path / "samples"
    (samples / "7" / dd.COMP).mkdir(parents=True)
    shutil.copyfile(ds / "clean" / "0000.wav", samples / "7" / dd.COMP / "hash1.wav")
    store, _ = await dd.build(tmp_path / "validator.sqlite", "full", ds)
    try:
        out = await build_report(store, dd.EPOCH, tmp_path / "out", samples)
    finally:
        await store.aclose()
    html = out.read_text()
    captions = [unescape(c) for c in re.findall(r'<img alt="([^"]+) spectrogram"', html)]
    assert captions == ["degraded input", "winner's output (uid 1, PESQ winner)", "clean reference"]


async def test_report_when_the_dataset_is_gone_and_every_model_failed(tmp_path: Path) -> None:
    _, html = await _report(tmp_path, "failed", keep_dataset=False)
    _self_contained(html)
    assert html.count('<rect class="bar') == 0
    assert html.count('<circle class="pt unproc"') == 4  # the unprocessed input still shows
    assert "is no longer on disk" in html
    assert "nobody beat the unprocessed input" in html
    assert "data:image/png" not in html


async def test_report_of_an_unknown_epoch_names_the_known_ones(tmp_path: Path) -> None:
    store, _ = await dd.build(tmp_path / "v.sqlite", "empty")
    try:
        with pytest.raises(InputError, match=r"no epoch 3 in .* \(epochs in the store: 7–7\)"):
            await report_document(store, 3)
    finally:
        await store.aclose()


def test_report_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def make() -> None:
        store, _ = await dd.build(tmp_path / "data" / "validator.sqlite", "full")
        await store.aclose()

    anyio.run(make)
    argv = ["report", "--epoch", "7", "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o" / "epoch-7.html")
    assert main(["report", "--epoch", "8", "--data-dir", str(tmp_path / "data")]) == 2
    assert "no epoch 8 in" in capsys.readouterr().err
    assert main(["report", "--epoch", "7", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "no validator state file there" in capsys.readouterr().err
    config = tmp_path / "validator.toml"
    config.write_text(f'netuid = 1\ndata_dir = "{tmp_path / "data"}"\n')
    assert main(["report", "--epoch", "7", "--config", str(config), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "epoch-7.html")


async def test_report_pages_in_chromium(browser: Browser, tmp_path: Path) -> None:
    expected = {
        "full": {"#metrics rect.bar": 4, "circle.pt": 12, "#spectrograms img": 2, "rect.seg": 22},
        "failed": {"#metrics rect.bar": 0, "circle.pt": 4, "#spectrograms img": 2, "rect.seg": 10},
        "empty": {"#metrics rect.bar": 0, "circle.pt": 0, "#spectrograms img": 2, "rect.seg": 0},
    }
    for scenario, counts in expected.items():
        out, _ = await _report(tmp_path / scenario, scenario)
        page = await browser.open(out.as_uri())
        try:
            assert {sel: await page.count(sel) for sel in counts} == counts, scenario
            widths = await page.eval(
                "[...document.querySelectorAll('#spectrograms img')].map(i => i.naturalWidth)"
            )
            assert widths == [124, 124]  # the inline PNGs decode in the browser
            await page.screenshot(artifacts_dir() / f"report-{scenario}.png")
            assert page.errors == []
        finally:
            await page.close()


# -- the miner's HTML view ------------------------------------------------------------------------

REV = "f" * 40


def _record(epoch: int, at: float, validator: str, ours: float, winner: str, score: float):
    me = "5Miner" + "m" * 42
    res = MinerResult(
        hotkey=me,
        hf_model_namespace="me",
        hf_model_name="denoiser",
        hf_model_revision=REV,
        block=600,
        metrics={"PESQ": MetricStats(mean=ours, ci_low=ours - 0.1, ci_high=ours + 0.1)},
    )
    win = Winner(
        hotkey=me if winner == "me" else winner,
        uid=3,
        hf_model_namespace="w",
        hf_model_name="best",
        hf_model_revision=REV,
        score=score,
    )
    fb = FeedbackRequest(
        competition=dd.COMP, epoch=epoch, seed=1, result=res, winners={"PESQ": win}
    )
    return FeedbackRecord(at, validator, 0, fb)


def _records() -> list[FeedbackRecord]:
    return [
        _record(5, 100.0, "5V1", 2.0, "5Other", 2.4),
        _record(5, 101.0, "5V2", 2.05, "5Other", 2.4),  # later: this one counts
        _record(6, 200.0, "5V1", 2.6, "me", 2.6),
    ]


def test_feedback_history_keeps_the_latest_record_per_epoch() -> None:
    (rows,) = feedback_history(_records()).values()
    assert [(r["epoch"], r["validators"]) for r in rows] == [(5, 2), (6, 1)]
    assert rows[0]["metrics"]["PESQ"] == {
        "ours": 2.05,
        "ci_low": pytest.approx(1.95),
        "ci_high": pytest.approx(2.15),
        "winner": 2.4,
        "winner_uid": 3,
        "we_won": False,
    }
    assert rows[1]["metrics"]["PESQ"]["we_won"] is True


async def test_feedback_show_html(
    browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FeedbackStore(tmp_path, max_file_bytes=1 << 20, keep_files=2)
    for r in _records():
        store.append_sync(r.to_json() + b"\n")
    out = tmp_path / "fb.html"
    assert main(["feedback", "show", "--data-dir", str(tmp_path), "--html", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text()
    _self_contained(html)
    # epoch 5: you + the winner; epoch 6: you won (one bar)
    bars = re.findall(r'<rect class="bar([^"]*)"[^>]*data-value="([^"]+)"', html)
    assert bars == [("", "2.05"), (" base", "2.4"), (" win", "2.6")]
    assert "2.05 / 2.4 (-0.35)" in html
    page = await browser.open(out.as_uri())
    try:
        assert await page.count("rect.bar") == 3
        assert await page.count("tbody tr") == 2
        await page.screenshot(artifacts_dir() / "feedback.png")
        assert page.errors == []
    finally:
        await page.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["feedback", "show", "--data-dir", str(empty), "--html"]) == 0
    assert "no feedback yet" in (empty / "feedback.html").read_text()
