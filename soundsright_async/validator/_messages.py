"""Plain translations between the store's rows and the wire and judge formats (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..protocol import FeedbackRequest, MetricStats, MinerResult, Winner, encode_message
from ._store import CandidateRow, OutboxItem, ResultRow

__all__ = ["epoch_feedback", "judge_input", "miner_result", "result_feedback"]


def miner_result(c: CandidateRow, r: ResultRow | None) -> MinerResult:
    metrics: dict[str, MetricStats] = {}
    if r is not None and r.metrics:
        for name, m in r.metrics.get("metrics", {}).items():
            ci = m.get("confidence_interval") or (None, None)
            metrics[name] = MetricStats(mean=float(m["average"]), ci_low=ci[0], ci_high=ci[1])
    return MinerResult(
        hotkey=c.hotkey,
        hf_model_namespace=c.namespace,
        hf_model_name=c.name,
        hf_model_revision=c.revision,
        block=c.commitment_block,
        model_hash=(r.content_hash or None) if r is not None else (c.content_hash or None),
        valid=r is not None and r.passed,
        reason=None if r is None or r.passed else f"{r.failed_step}: {r.reason}",
        metrics=metrics,
    )


def result_feedback(c: CandidateRow, r: ResultRow, *, seed: int, expires_at: float) -> OutboxItem:
    body = FeedbackRequest(
        competition=c.competition, epoch=c.epoch, seed=seed, result=miner_result(c, r)
    )
    return OutboxItem(
        "result", c.epoch, c.hotkey, c.competition, encode_message(body), expires_at=expires_at
    )


def epoch_feedback(
    candidates: Sequence[CandidateRow],
    results: Mapping[tuple[str, str], ResultRow],
    winners: Mapping[str, Mapping[str, Any]],
    uids: Mapping[str, int],
    *,
    seed: int,
    expires_at: float,
) -> list[OutboxItem]:
    """One Feedback per miner candidate of the judged epoch, with its competition's winners."""
    by_hotkey = {(c.hotkey, c.competition): c for c in candidates if c.kind == "miner"}
    items = []
    for (hotkey, competition), c in sorted(by_hotkey.items()):
        table: dict[str, Winner] = {}
        for metric, w in winners.get(competition, {}).items():
            owner = next(
                (x for x in candidates if x.hotkey == w["hotkey"] and x.competition == competition),
                None,
            )
            if owner is None:
                continue
            table[metric] = Winner(
                hotkey=w["hotkey"],
                uid=uids.get(w["hotkey"]),
                hf_model_namespace=owner.namespace,
                hf_model_name=owner.name,
                hf_model_revision=owner.revision,
                score=float(w["average"]),
            )
        body = FeedbackRequest(
            competition=competition,
            epoch=c.epoch,
            seed=seed,
            result=miner_result(c, results.get((hotkey, competition))),
            winners=table,
        )
        items.append(
            OutboxItem(
                "epoch", c.epoch, hotkey, competition, encode_message(body), expires_at=expires_at
            )
        )
    return items


def judge_input(
    *,
    hotkeys: Sequence[str],
    permits: Sequence[bool],
    candidates: Sequence[CandidateRow],
    results: Sequence[ResultRow],
    baseline: Mapping[str, Mapping[str, float]],
    previous_winners: Mapping[str, Any],
    unprocessed: Mapping[str, Mapping[str, float]],
    burn_uid: int | None,
) -> dict[str, Any]:
    """The judge's input document (``soundsright judge --input``) for one epoch."""
    cands = {(c.hotkey, c.competition): c for c in candidates}
    by_comp: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.kind != "miner" or not r.passed:
            continue
        c = cands.get((r.hotkey, r.competition))
        if c is None:
            continue
        by_comp.setdefault(r.competition, []).append(
            {
                "hotkey": r.hotkey,
                "block": c.commitment_block,
                "metrics": r.averages(),
                "model_hash": r.content_hash,
                "namespace": c.namespace,
                "name": c.name,
                "revision": c.revision,
                "ckpt_hashes": sorted(c.ckpt_hashes),
            }
        )
    doc: dict[str, Any] = {
        "hotkeys": list(hotkeys),
        "validator_permits": list(permits),
        "baseline": {c: dict(m) for c, m in sorted(baseline.items())},
        "previous_winners": previous_winners,
        "results": {c: sorted(rs, key=lambda x: x["hotkey"]) for c, rs in sorted(by_comp.items())},
        "unprocessed": {c: dict(m) for c, m in sorted(unprocessed.items())},
        # Nobody scored: no weights (or the burn uid), never equal weights to every miner.
        "fallback": "none",
    }
    if burn_uid is not None and 0 <= burn_uid < len(hotkeys):
        doc["burn_uid"] = burn_uid
    return doc
