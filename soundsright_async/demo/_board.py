"""The demo's leaderboard: one judged epoch read back from the validator's store (its
``judgements`` and ``results`` tables) and the weights read back from the chain. Reading is plain
blocking SQLite (run it in a thread); formatting is pure."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chain._localnet_db import LocalnetDB

__all__ = ["Board", "MinerRow", "WinnerRow", "format_board", "judged_epochs", "read_board"]


@dataclass(frozen=True, slots=True)
class WinnerRow:
    competition: str
    metric: str
    name: str  # the miner's name, or the hotkey when it is no demo miner
    uid: int | None
    average: float
    ci: tuple[float, float] | None
    unprocessed: float | None


@dataclass(frozen=True, slots=True)
class MinerRow:
    name: str
    uid: int
    model: str
    competition: str
    points: float
    weight: float  # the validator's on-chain weight for this uid, normalised to sum 1


@dataclass(frozen=True, slots=True)
class Board:
    epoch: int
    winners: list[WinnerRow]
    miners: list[MinerRow]


def _connect(store: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def judged_epochs(store: Path) -> list[int]:
    """The epochs the validator has judged so far (none while its store does not exist yet)."""
    if not store.is_file():
        return []
    conn = _connect(store)
    try:
        return [int(r[0]) for r in conn.execute("SELECT epoch FROM judgements ORDER BY epoch")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _ci(metric: dict[str, Any]) -> tuple[float, float] | None:
    ci = metric.get("confidence_interval")
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return float(ci[0]), float(ci[1])
    return None


def read_board(
    store: Path,
    epoch: int,
    chain: LocalnetDB,
    netuid: int,
    validator_hotkey: str,
    miners: dict[str, tuple[str, str, str]],
) -> Board:
    """``miners`` maps a hotkey to (name, model, competition)."""
    conn = _connect(store)
    try:
        row = conn.execute("SELECT output FROM judgements WHERE epoch = ?", (epoch,)).fetchone()
        if row is None:
            raise LookupError(f"epoch {epoch} is not judged")
        out = json.loads(row["output"])
        metrics = {
            (r["hotkey"], r["competition"]): json.loads(r["metrics"] or "{}").get("metrics", {})
            for r in conn.execute(
                "SELECT hotkey, competition, metrics FROM results WHERE epoch = ?", (epoch,)
            )
        }
        unprocessed = {
            r["competition"]: json.loads(r["metrics"] or "{}").get("metrics", {})
            for r in conn.execute(
                "SELECT competition, metrics FROM unprocessed WHERE epoch = ?", (epoch,)
            )
        }
    finally:
        conn.close()
    graph = chain.metagraph(netuid)
    uid_of = {n.hotkey: n.uid for n in graph.neurons}
    winners: list[WinnerRow] = []
    for comp, by_metric in sorted(out.get("winners", {}).items()):
        for metric, w in by_metric.items():
            m = metrics.get((w["hotkey"], comp), {}).get(metric, {})
            base = unprocessed.get(comp, {}).get(metric, {})
            winners.append(
                WinnerRow(
                    competition=comp,
                    metric=metric,
                    name=miners.get(w["hotkey"], (w["hotkey"], "", ""))[0],
                    uid=uid_of.get(w["hotkey"]),
                    average=float(w["average"]),
                    ci=_ci(m),
                    unprocessed=None if "average" not in base else float(base["average"]),
                )
            )
    me = uid_of.get(validator_hotkey)
    on_chain = chain.weights(netuid).get(me, {}) if me is not None else {}
    total = sum(on_chain.values()) or 1
    scores = out.get("scores", [])
    rows = []
    for hotkey, (name, model, comp) in miners.items():
        uid = uid_of.get(hotkey)
        if uid is None:
            continue
        points = float(scores[uid]) if uid < len(scores) else 0.0
        rows.append(MinerRow(name, uid, model, comp, points, on_chain.get(uid, 0) / total))
    rows.sort(key=lambda r: (-r.weight, r.uid))
    return Board(epoch, winners, rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_board(board: Board) -> str:
    """The leaderboard as printed (stable columns; the acceptance test parses it)."""
    lines = [f"Leaderboard, epoch {board.epoch}", "", "winners (competition, metric):"]
    if not board.winners:
        lines.append("  none: no model beat the unprocessed input")
    for w in board.winners:
        ci = "-" if w.ci is None else f"[{w.ci[0]:.3f}, {w.ci[1]:.3f}]"
        lines.append(
            f"  {w.competition:<24} {w.metric:<6} {w.name:<16} uid {_uid(w.uid):>3}"
            f"  average {w.average:.3f}  95% CI {ci}  unprocessed {_num(w.unprocessed)}"
        )
    lines += ["", "miners (points from the judgement, weight read back from the chain):"]
    for m in board.miners:
        lines.append(
            f"  {m.name:<16} uid {m.uid:>3}  {m.model:<14} {m.competition:<24}"
            f" points {m.points:.4f}  weight {m.weight:.4f}"
        )
    return "\n".join(lines)


def _uid(uid: int | None) -> str:
    return "?" if uid is None else str(uid)
