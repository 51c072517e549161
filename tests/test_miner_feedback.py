"""feedback.jsonl after a power cut, and ``feedback show`` with hostile text (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from soundsright_async.cli import main as cli_main
from soundsright_async.miner.feedback import FeedbackRecord, FeedbackStore, read_records
from soundsright_async.protocol import FeedbackRequest, MetricStats, MinerResult, Winner

REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"


def _request(epoch: int, *, reason: str | None = None, metric: str = "PESQ") -> FeedbackRequest:
    return FeedbackRequest(
        competition="DENOISING_16000HZ",
        epoch=epoch,
        seed=1,
        result=MinerResult(
            hotkey="5Me",
            hf_model_namespace="ns",
            hf_model_name="m",
            hf_model_revision=REV,
            valid=reason is None,
            reason=reason,
            metrics={metric: MetricStats(mean=2.5)},
        ),
        winners={
            metric: Winner(
                hotkey="5W",
                hf_model_namespace="w",
                hf_model_name="x\x1b[2J",
                hf_model_revision=REV,
                score=3.0,
            )
        },
    )


def _line(epoch: int) -> bytes:
    return FeedbackRecord(1000.0 + epoch, "5V", 1, _request(epoch)).to_json() + b"\n"


def test_a_torn_last_line_is_cut_at_start_and_the_next_record_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    good = _line(1) + _line(2)
    path.write_bytes(good + _line(3)[:57])  # power cut in the middle of the third record
    store = FeedbackStore(tmp_path, max_file_bytes=1 << 20, keep_files=1)
    with capture_logs() as logs:
        assert store.repair() == 57
        assert store.repair() == 0
    assert path.read_bytes() == good
    assert [e["event"] for e in logs] == ["feedback.torn_line_cut"]
    store.append_sync(_line(4))
    records, skipped, _ = read_records(tmp_path)
    assert [r.feedback.epoch for r in records] == [1, 2, 4]
    assert skipped == 0


def test_append_never_writes_onto_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    store = FeedbackStore(tmp_path, max_file_bytes=1 << 20, keep_files=1)
    store.append_sync(_line(1))
    with path.open("ab") as f:
        f.write(b'{"received_ts": 5, "vali')  # a write cut short while the daemon ran
    store.append_sync(_line(2))
    assert path.read_bytes() == _line(1) + _line(2)


def test_a_file_that_is_all_torn_is_emptied(tmp_path: Path) -> None:
    (tmp_path / "feedback.jsonl").write_bytes(b'{"received')
    assert FeedbackStore(tmp_path, max_file_bytes=1 << 20, keep_files=1).repair() == 10
    assert (tmp_path / "feedback.jsonl").read_bytes() == b""


def test_feedback_show_strips_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FeedbackStore(tmp_path, max_file_bytes=1 << 20, keep_files=1)
    req = _request(7, reason="bad\x1b]0;owned\x07\nFAKE LINE\r", metric="PE\x1b[31mSQ\u202e")
    store.append_sync(FeedbackRecord(1000.0, "5V", 1, req).to_json() + b"\n")
    assert cli_main(["feedback", "show", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\r" not in out
    assert "\u202e" not in out
    assert "\x07" not in out
    assert "  model ns/m@6bab4cf9116d (commit block None): INVALID: bad]0;ownedFAKE LINE\n" in out
    assert "  PE[31mSQ       2.5" in out
    assert out.rstrip("\n").endswith("w/x[2J@6bab4cf9116d")
