"""Deterministic validator stores for the dashboard and report tests, written with ``Store``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import soundfile as sf

from soundsright_async.chain import Block
from soundsright_async.validator._epochs import EpochClock
from soundsright_async.validator._state import ValidatorState
from soundsright_async.validator._store import CandidateRow, ResultRow, Store

COMP = "DENOISING_16000HZ"
COMPS = (COMP, "DEREVERBERATION_16000HZ")
EPOCH = 7
HOTKEYS = {
    1: "5Alice" + "a" * 42,
    2: "5Bob" + "b" * 44,
    3: "5Carol" + "c" * 42,
    4: "5Dan" + "d" * 44,
}
NAMES = {1: "alice", 2: "bob", 3: "carol", 4: "dan"}
STEPS_OK = [
    ("fetch", 0.5),
    ("build", 12.0),
    ("start", 1.5),
    ("status", 0.5),
    ("prepare", 0.2),
    ("upload", 0.3),
    ("enhance", 4.0),
    ("download", 0.4),
    ("reset", 0.1),
    ("outputs", 0.05),
]
FILES = ("0000.wav", "0001.wav")


def _metric(avg: float, lo: float, hi: float, scores: tuple[float, float]) -> dict[str, Any]:
    return {
        "average": avg,
        "confidence_interval": [lo, hi],
        "scores": dict(zip(FILES, scores, strict=True)),
        "failed": {},
    }


def dataset_score(pesq: tuple[float, float], estoi: tuple[float, float]) -> dict[str, Any]:
    p, e = sum(pesq) / 2, sum(estoi) / 2
    return {
        "competition": COMP,
        "sample_rate": 16000,
        "files": 2,
        "metrics": {
            "PESQ": _metric(p, p - 0.2, p + 0.2, pesq),
            "ESTOI": _metric(e, e - 0.05, e + 0.05, estoi),
        },
    }


def write_dataset(root: Path) -> Path:
    """Two 1 s files at 16 kHz: a 440 Hz + 1.2 kHz tone, and the same with white noise."""
    rng = np.random.default_rng(7)
    t = np.arange(16000) / 16000
    for i, name in enumerate(FILES):
        clean = 0.3 * np.sin(2 * np.pi * 440 * (i + 1) * t) + 0.1 * np.sin(2 * np.pi * 1200 * t)
        for sub, sig in (("clean", clean), ("degraded", clean + 0.05 * rng.standard_normal(16000))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            sf.write(root / sub / name, sig, 16000, subtype="FLOAT")
    return root


def candidate(uid: int, state: str = "done", reason: str = "") -> CandidateRow:
    return CandidateRow(
        EPOCH,
        HOTKEYS[uid],
        COMP,
        uid,
        NAMES[uid],
        "denoiser",
        f"{uid:x}" * 40,
        600 + uid,
        state,
        reason,
    )


def result(
    uid: int,
    *,
    passed: bool,
    steps: list[tuple[str, float]],
    metrics: dict[str, Any] | None,
    failed_step: str | None = None,
    reason: str | None = None,
) -> ResultRow:
    return ResultRow(
        EPOCH,
        HOTKEYS[uid],
        COMP,
        uid,
        "miner",
        f"hash{uid}",
        passed,
        failed_step,
        reason,
        None,
        [
            {"step": s, "seconds": sec, "ok": passed or i < len(steps) - 1, "reason": None}
            for i, (s, sec) in enumerate(steps)
        ],
        metrics,
    )


def judgement_output(winner_uid: int | None, weights: dict[int, float]) -> str:
    winners: dict[str, Any] = {}
    decisions = []
    if winner_uid is not None:
        winners[COMP] = {
            m: {"hotkey": HOTKEYS[winner_uid], "block": 600 + winner_uid, "average": avg}
            for m, avg in (("PESQ", 2.5), ("ESTOI", 0.8))
        }
        decisions = [
            {
                "competition": COMP,
                "metric": m,
                "winner": {"hotkey": HOTKEYS[winner_uid], "uid": winner_uid},
            }
            for m in ("PESQ", "ESTOI")
        ]
    vec = [weights.get(u, 0.0) for u in range(5)]
    return orjson.dumps(
        {"winners": winners, "weights": vec, "scores": vec, "decisions": decisions}
    ).decode()


async def build(
    path: Path, scenario: str, dataset_root: Path | None = None
) -> tuple[Store, ValidatorState]:
    """``full``: four candidates (two scored, one failed at build, one waiting), the
    unprocessed reference, a judgement and a weight attempt. ``empty``: the epoch and nothing
    else. ``failed``: three candidates, every one failed; the unprocessed input scored; judged
    with no winner. ``none``: no epoch at all yet."""
    store = await Store(path).open()
    state = ValidatorState(
        hotkey="5Validator" + "v" * 38, clock=EpochClock(100), competitions=COMPS
    )
    state.head = Block(750, "0x" + "ab" * 32)
    for name in ("status", "metagraph", "scheduler"):
        state.board.register(name, max_age_s=60)
        state.board.tick(name)
    state.lag.add(0.0025)
    state.ready = True
    if scenario == "none":
        return store, state
    datasets = {COMP: str(dataset_root)} if dataset_root is not None else {}
    await store.record_epoch(EPOCH, start_block=700, end_block=799, start_hash="0xab", seed=1234)
    await store.set_epoch(EPOCH, status="ready", datasets=datasets)
    unprocessed = dataset_score((1.7, 1.9), (0.58, 0.62))
    if scenario == "full":
        for uid in (1, 2, 3):
            await store.add_candidate(candidate(uid, "accepted"))
        await store.add_candidate(candidate(4, "accepted"))
        for uid in (1, 2, 3):
            await store.set_candidate(
                EPOCH, HOTKEYS[uid], COMP, state="running", content_hash=f"hash{uid}"
            )
        await store.save_result(
            result(1, passed=True, steps=STEPS_OK, metrics=dataset_score((2.4, 2.6), (0.78, 0.82)))
        )
        await store.save_result(
            result(2, passed=True, steps=STEPS_OK, metrics=dataset_score((2.0, 2.2), (0.68, 0.72)))
        )
        await store.save_result(
            result(
                3,
                passed=False,
                steps=[("fetch", 0.4), ("build", 3.0)],
                metrics=None,
                failed_step="build",
                reason="build_failed",
            )
        )
        await store.save_unprocessed(EPOCH, COMP, unprocessed)
        await store.save_judgement(EPOCH, "{}", judgement_output(1, {1: 0.6, 2: 0.4}), [])
        await store.record_weights(EPOCH, 805, "ok", "", {1: 0.6, 2: 0.4})
    elif scenario == "failed":
        for uid in (1, 2, 3):
            await store.add_candidate(candidate(uid, "accepted"))
        fails = {
            1: ("fetch", "repo_not_found"),
            2: ("build", "build_failed"),
            3: ("enhance", "timeout"),
        }
        for uid, (step, why) in fails.items():
            steps = STEPS_OK[: [s for s, _ in STEPS_OK].index(step) + 1]
            await store.save_result(
                result(uid, passed=False, steps=steps, metrics=None, failed_step=step, reason=why)
            )
        await store.save_unprocessed(EPOCH, COMP, unprocessed)
        await store.save_judgement(EPOCH, "{}", judgement_output(None, {}), [])
    state.epoch = await store.epoch(EPOCH)
    return store, state
