"""The miner's Feedback store: ``feedback.jsonl`` in the data dir, and its summary.

Every Feedback a validator sends is one JSON line (``FeedbackRecord``), appended with ``O_APPEND``,
flushed and ``fsync``'d before the validator gets its answer. A torn last line (a crash or power
cut mid-write) is cut back to the last newline at start (``repair``) and before every append, so
no record is ever written onto a partial line. When an append would make the file
larger than ``max_file_bytes`` the file is rotated first (``feedback.jsonl`` -> ``.1`` -> ``.2``
..., keeping ``keep_files``), and the directory is fsync'd so a crash never loses a rename.

``read_records`` reads the current and rotated files (oldest first), skipping lines that do not
parse (a torn last line after a power cut); ``summarize`` reduces them to the latest result per
competition against that epoch's winners (``soundsright feedback show``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from ..competitions import get_competition
from ..protocol import FeedbackRequest, ProtocolError, decode_message

__all__ = [
    "FEEDBACK_FILE",
    "FeedbackRecord",
    "FeedbackStore",
    "headline",
    "read_records",
    "summarize",
]

FEEDBACK_FILE = "feedback.jsonl"
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    received_at: float
    """Unix seconds."""
    validator: str
    validator_uid: int | None
    feedback: FeedbackRequest

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "received_at": _iso(self.received_at),
                "received_ts": self.received_at,
                "validator": self.validator,
                "validator_uid": self.validator_uid,
                "feedback": self.feedback.model_dump(mode="json"),
            }
        )

    @classmethod
    def from_json(cls, line: bytes) -> FeedbackRecord:
        """``ValueError`` (``ProtocolError`` included) when the line is not a record."""
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        ts, validator, uid = (
            data.get("received_ts"),
            data.get("validator"),
            data.get("validator_uid"),
        )
        if not isinstance(ts, int | float) or not isinstance(validator, str):
            raise ValueError("received_ts or validator missing")
        if uid is not None and not isinstance(uid, int):
            raise ValueError("validator_uid is not an int")
        return cls(float(ts), validator, uid, decode_message(FeedbackRequest, data["feedback"]))


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _cut_torn_tail(fd: int, size: int) -> int:
    """Truncate the file open on ``fd`` (``size`` bytes) back to just after its last newline;
    returns the bytes cut (0 when it already ends with one, or is empty)."""
    if size <= 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    keep = 0
    while end > 0:
        start = max(0, end - 64 * 1024)
        chunk = os.pread(fd, end - start, start)
        at = chunk.rfind(b"\n")
        if at >= 0:
            keep = start + at + 1
            break
        end = start
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return size - keep


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FeedbackStore:
    """Append-only, fsync'd, size-rotated JSON lines. Blocking work runs in a thread."""

    def __init__(self, directory: Path, *, max_file_bytes: int, keep_files: int) -> None:
        self.directory = directory
        self.path = directory / FEEDBACK_FILE
        self.max_file_bytes = max_file_bytes
        self.keep_files = keep_files
        self._lock = threading.Lock()  # a timed-out append's thread may still be writing

    def repair(self) -> int:
        """Cut a torn last line (a write cut short by a crash or power cut) back to the last
        newline; returns the bytes cut. Called at start; ``append`` checks again every time."""
        with self._lock:
            return self._repair_locked()

    def _repair_locked(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            cut = _cut_torn_tail(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        if cut:
            log.warning("feedback.torn_line_cut", path=str(self.path), bytes=cut)
        return cut

    async def append(self, record: FeedbackRecord) -> None:
        await asyncio.to_thread(self.append_sync, record.to_json() + b"\n")

    def append_sync(self, line: bytes) -> None:
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = -1
            if size > 0 and size + len(line) > self.max_file_bytes:
                self._rotate()
                size = -1
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                if size > 0 and _cut_torn_tail(fd, size):  # never append onto a partial line
                    log.warning("feedback.torn_line_cut", path=str(self.path))
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if size < 0:  # a new file: make its directory entry durable too
                _fsync_dir(self.directory)

    def _rotate(self) -> None:
        if self.keep_files == 0:
            self.path.unlink()
        else:
            oldest = self.directory / f"{FEEDBACK_FILE}.{self.keep_files}"
            oldest.unlink(missing_ok=True)
            for n in range(self.keep_files - 1, 0, -1):
                src = self.directory / f"{FEEDBACK_FILE}.{n}"
                if src.exists():
                    src.rename(self.directory / f"{FEEDBACK_FILE}.{n + 1}")
            self.path.rename(self.directory / f"{FEEDBACK_FILE}.1")
        _fsync_dir(self.directory)

    def files(self) -> list[Path]:
        return feedback_files(self.directory)


def feedback_files(directory: Path) -> list[Path]:
    """The current and rotated files, oldest first."""
    rotated = []
    for p in directory.glob(f"{FEEDBACK_FILE}.*"):
        suffix = p.name.rsplit(".", 1)[1]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    out = [p for _, p in sorted(rotated, reverse=True)]
    current = directory / FEEDBACK_FILE
    return [*out, current] if current.exists() else out


def read_records(directory: Path) -> tuple[list[FeedbackRecord], int, list[Path]]:
    """``(records oldest first, lines skipped, files read)``."""
    records: list[FeedbackRecord] = []
    skipped = 0
    files = feedback_files(directory)
    for path in files:
        with path.open("rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    records.append(FeedbackRecord.from_json(line))
                except (ValueError, KeyError, ProtocolError):
                    skipped += 1
    return records, skipped, files


def _model(ns: str, name: str, rev: str) -> str:
    return f"{ns}/{name}@{rev[:12]}"


def headline(msg: FeedbackRequest) -> dict[str, Any]:
    """The numbers worth one log line: our means and the winners' scores by metric."""
    out: dict[str, Any] = {"competition": msg.competition, "epoch": msg.epoch}
    if msg.result is None:
        out["result"] = None
    else:
        out["valid"] = msg.result.valid
        if msg.result.reason:
            out["reason"] = msg.result.reason
        out["ours"] = {k: round(v.mean, 4) for k, v in msg.result.metrics.items()}
    out["winners"] = {k: round(w.score, 4) for k, w in msg.winners.items()}
    return out


def _metric_order(competition: str, names: Iterable[str]) -> list[str]:
    try:
        known = [str(m) for m in get_competition(competition).metrics]
    except KeyError:
        known = []
    names = set(names)
    return [m for m in known if m in names] + sorted(names - set(known))


def _latest(records: list[FeedbackRecord]) -> Iterator[tuple[str, list[FeedbackRecord]]]:
    by_comp: dict[str, list[FeedbackRecord]] = {}
    for r in records:
        by_comp.setdefault(r.feedback.competition, []).append(r)
    for comp in sorted(by_comp):
        yield comp, by_comp[comp]


def summarize(records: list[FeedbackRecord]) -> dict[str, Any]:
    """Per competition: the latest epoch's result (latest record) against its winners."""
    comps: dict[str, Any] = {}
    for comp, rows in _latest(records):
        last = max(rows, key=lambda r: (r.feedback.epoch, r.received_at))
        epoch = last.feedback.epoch
        validators = sorted({r.validator for r in rows if r.feedback.epoch == epoch})
        fb = last.feedback
        res = fb.result
        metrics: dict[str, Any] = {}
        names = set(fb.winners) | (set(res.metrics) if res else set())
        for metric in _metric_order(comp, names):
            ours = res.metrics.get(metric) if res else None
            win = fb.winners.get(metric)
            metrics[metric] = {
                "ours": None if ours is None else ours.mean,
                "ci_low": None if ours is None else ours.ci_low,
                "ci_high": None if ours is None else ours.ci_high,
                "winner": None if win is None else win.score,
                "winner_hotkey": None if win is None else win.hotkey,
                "winner_model": (
                    None
                    if win is None
                    else _model(win.hf_model_namespace, win.hf_model_name, win.hf_model_revision)
                ),
                "gap": None if ours is None or win is None else ours.mean - win.score,
                "we_won": bool(res and win and win.hotkey == res.hotkey),
            }
        comps[comp] = {
            "epoch": epoch,
            "seed": fb.seed,
            "received_at": _iso(last.received_at),
            "validator": last.validator,
            "validators": validators,
            "records": len(rows),
            "model": (
                None
                if res is None
                else _model(res.hf_model_namespace, res.hf_model_name, res.hf_model_revision)
            ),
            "commit_block": None if res is None else res.block,
            "valid": None if res is None else res.valid,
            "reason": None if res is None else res.reason,
            "metrics": metrics,
        }
    return {"records": len(records), "competitions": comps}
