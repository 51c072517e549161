"""JSON shapes of judging: parse an epoch (``soundsright judge --input``), render a judgement.

Parsing is strict about what judging reads (each problem names its field, e.g.
``results.DENOISING_16000HZ[2].block``): a metric value outside its range (``METRIC_RANGES``) and
a key given twice in one object are errors too. Extra fields inside result and winner records are
ignored, so enriched records (a ``seed``, confidence intervals) are judged like any other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from ..._exceptions import InputError
from ...competitions import COMPETITIONS, Competition, Metric
from ._types import (
    GATE_METRICS,
    METRIC_RANGES,
    Decision,
    Entrant,
    EpochInput,
    Fallback,
    Judgement,
    ModelResult,
    WinnerRecord,
)

__all__ = ["decision_to_dict", "judgement_to_dict", "parse_epoch_input", "parse_epoch_json"]

_TOP_LEVEL = (
    "hotkeys",
    "validator_permits",
    "baseline",
    "unprocessed",
    "previous_winners",
    "results",
    "fallback",
    "burn_uid",
)
_BY_NAME = {c.name: c for c in COMPETITIONS}
_OPTIONAL_STR = ("model_hash", "namespace", "name", "revision")


def parse_epoch_json(raw: bytes | str) -> EpochInput:
    """Decode and parse an epoch JSON document; refuse invalid JSON (NaN included) and keys
    given twice in one object (JSON parsers keep the last one silently)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}") from None
    _refuse_duplicate_keys(json.loads(raw, object_pairs_hook=_Pairs), "")
    return parse_epoch_input(data)


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, in order, duplicates kept."""


def _refuse_duplicate_keys(node: object, path: str) -> None:
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            p = f"{path}.{key}" if path else key
            if key in seen:
                raise InputError(f"{p}: key given twice in one object")
            seen.add(key)
            _refuse_duplicate_keys(value, p)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_duplicate_keys(value, f"{path}[{i}]")


def parse_epoch_input(obj: object) -> EpochInput:
    """Turn decoded JSON into an ``EpochInput``; raise ``InputError`` naming the bad field."""
    top = _object(obj, "input")
    unknown = sorted(set(top) - set(_TOP_LEVEL))
    if unknown:
        raise InputError(f"{unknown[0]}: unknown field (expected {', '.join(_TOP_LEVEL)})")
    if "hotkeys" not in top:
        raise InputError("hotkeys: required field is missing")
    hotkeys = tuple(
        _str(v, f"hotkeys[{i}]") for i, v in enumerate(_list(top["hotkeys"], "hotkeys"))
    )
    first: dict[str, int] = {}
    for i, hk in enumerate(hotkeys):
        if hk in first:
            raise InputError(f"hotkeys[{i}]: {hk!r} is already uid {first[hk]}")
        first[hk] = i
    permits: tuple[bool, ...] = ()
    if top.get("validator_permits") is not None:
        raw = _list(top["validator_permits"], "validator_permits")
        if len(raw) != len(hotkeys):
            raise InputError(f"validator_permits: has {len(raw)} flags for {len(hotkeys)} hotkeys")
        permits = tuple(_bool(v, f"validator_permits[{i}]") for i, v in enumerate(raw))
    try:
        return EpochInput(
            hotkeys=hotkeys,
            validator_permits=permits,
            baseline=_averages(top.get("baseline"), "baseline"),
            unprocessed=_unprocessed(top.get("unprocessed")),
            previous_winners=_previous(top.get("previous_winners")),
            results=_results(top.get("results")),
            fallback=_fallback(top.get("fallback"), hotkeys, permits),
            burn_uid=_burn_uid(top.get("burn_uid"), hotkeys),
        )
    except ValueError as exc:  # the checks above should catch everything; keep it one line
        raise InputError(str(exc)) from None


def _averages(raw: object, field: str) -> dict[str, dict[Metric, float]]:
    out: dict[str, dict[Metric, float]] = {}
    for comp, value in _competitions(raw, field).items():
        path = f"{field}.{comp.name}"
        metrics = _metrics_of(comp, _object(value, path), path)
        averages = {m: _average(v, f"{path}.{m}", m) for m, v in metrics}
        out[comp.name] = {m: x for m, x in averages.items() if x is not None}
    return out


def _unprocessed(raw: object) -> dict[str, dict[Metric, float]]:
    out = _averages(raw, "unprocessed")
    for name, averages in out.items():
        gate = GATE_METRICS[name]
        if gate not in averages:
            raise InputError(
                f"unprocessed.{name}.{gate}: required field is missing (the competition's gate "
                "metric; leave the competition out to judge it without the gate)"
            )
    return out


def _burn_uid(raw: object, hotkeys: tuple[str, ...]) -> int | None:
    if raw is None:
        return None
    uid = _int(raw, "burn_uid")
    if uid >= len(hotkeys):
        raise InputError(f"burn_uid: uid {uid} is not registered")
    return uid


def _previous(raw: object) -> dict[str, dict[Metric, WinnerRecord]]:
    out: dict[str, dict[Metric, WinnerRecord]] = {}
    for comp, value in _competitions(raw, "previous_winners").items():
        path = f"previous_winners.{comp.name}"
        out[comp.name] = {}
        for metric, rec in _metrics_of(comp, _object(value, path), path):
            if rec is None:
                continue
            p = f"{path}.{metric}"
            r = _object(rec, p)
            average = _in_range(
                _number(_required(r, "average", p), f"{p}.average"), metric, f"{p}.average"
            )
            out[comp.name][metric] = WinnerRecord(
                hotkey=_str(_required(r, "hotkey", p), f"{p}.hotkey"),
                block=_int(_required(r, "block", p), f"{p}.block"),
                average=average,
            )
    return out


def _results(raw: object) -> dict[str, tuple[ModelResult, ...]]:
    out: dict[str, tuple[ModelResult, ...]] = {}
    for comp, value in _competitions(raw, "results").items():
        path = f"results.{comp.name}"
        records: list[ModelResult] = []
        seen: dict[str, int] = {}
        for i, rec in enumerate(_list(value, path)):
            r = _result(comp, rec, f"{path}[{i}]")
            if r.hotkey in seen:
                raise InputError(
                    f"{path}[{i}].hotkey: {r.hotkey!r} already has a result at "
                    f"{path}[{seen[r.hotkey]}] (at most one result per hotkey and competition)"
                )
            seen[r.hotkey] = i
            records.append(r)
        out[comp.name] = tuple(records)
    return out


def _result(comp: Competition, raw: object, path: str) -> ModelResult:
    r = _object(raw, path)
    block = r.get("block")
    metrics = _object(_required(r, "metrics", path), f"{path}.metrics")
    averages = {
        m: _average(v, f"{path}.metrics.{m}", m) for m, v in _metrics_of(comp, metrics, path)
    }
    optional = {k: None if r.get(k) is None else _str(r[k], f"{path}.{k}") for k in _OPTIONAL_STR}
    ckpts = r.get("ckpt_hashes")
    ckpt_list = [] if ckpts is None else _list(ckpts, f"{path}.ckpt_hashes")
    return ModelResult(
        hotkey=_str(_required(r, "hotkey", path), f"{path}.hotkey"),
        block=None if block is None else _int(block, f"{path}.block"),
        metrics={m: v for m, v in averages.items() if v is not None},
        model_hash=optional["model_hash"],
        namespace=optional["namespace"],
        name=optional["name"],
        revision=optional["revision"],
        ckpt_hashes=frozenset(_str(h, f"{path}.ckpt_hashes[{j}]") for j, h in enumerate(ckpt_list)),
    )


def _fallback(raw: object, hotkeys: tuple[str, ...], permits: tuple[bool, ...]) -> Fallback:
    if raw is None:
        return "miners"
    if raw in ("miners", "none"):
        return "miners" if raw == "miners" else "none"
    if not isinstance(raw, list):
        raise InputError('fallback: expected "miners", "none" or a list of uids')
    uids = tuple(_int(v, f"fallback[{i}]") for i, v in enumerate(raw))
    for i, uid in enumerate(uids):
        if not 0 <= uid < len(hotkeys):
            raise InputError(f"fallback[{i}]: uid {uid} is not registered")
        if permits and permits[uid]:
            raise InputError(f"fallback[{i}]: uid {uid} holds a validator permit")
    return uids


# --------------------------------------------------------------------------- field checks


def _competitions(raw: object, path: str) -> dict[Competition, object]:
    if raw is None:
        return {}
    out: dict[Competition, object] = {}
    for key, value in _object(raw, path).items():
        if key not in _BY_NAME:
            raise InputError(
                f"{path}.{key}: unknown competition (expected one of {', '.join(_BY_NAME)})"
            )
        out[_BY_NAME[key]] = value
    return out


def _metrics_of(
    comp: Competition, obj: Mapping[str, object], path: str
) -> list[tuple[Metric, object]]:
    names = [m.value for m in comp.metrics]
    out: list[tuple[Metric, object]] = []
    for key, value in obj.items():
        if key not in names:
            raise InputError(
                f"{path}.{key}: {comp.name} has no such metric (expected {', '.join(names)})"
            )
        out.append((Metric(key), value))
    return out


def _average(value: object, path: str, metric: Metric) -> float | None:
    """A metric average: a number, ``null`` (no score) or ``{"average": number | null, ...}``,
    within the metric's range."""
    if isinstance(value, dict):
        value = value.get("average")
    return None if value is None else _in_range(_number(value, path), metric, path)


def _in_range(value: float, metric: Metric, path: str) -> float:
    low, high = METRIC_RANGES[metric]
    if not low <= value <= high:
        raise InputError(f"{path}: {value:g} is outside {metric}'s range [{low:g}, {high:g}]")
    return value


def _required(obj: Mapping[str, object], key: str, path: str) -> object:
    if key not in obj:
        raise InputError(f"{path}.{key}: required field is missing")
    return obj[key]


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected an object, got {_kind(value)}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(f"{path}: expected a list, got {_kind(value)}")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{path}: expected a non-empty string, got {_kind(value)}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{path}: expected true or false, got {_kind(value)}")
    return value


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{path}: expected a non-negative integer, got {_kind(value)}")
    return value


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{path}: expected a number, got {_kind(value)}")
    return float(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


# --------------------------------------------------------------------------- output


def judgement_to_dict(j: Judgement) -> dict[str, Any]:
    """The ``soundsright judge --json`` document."""
    return {
        "competition_scores": {c: list(v) for c, v in j.competition_scores.items()},
        "scores": list(j.scores),
        "weights": list(j.weights),
        "fallback_used": j.fallback_used,
        "weights_rule": j.weights_rule.value,
        "winners": {
            c: {m.value: w.to_dict() for m, w in ws.items()} for c, ws in j.winners.items()
        },
        "decisions": [decision_to_dict(d) for d in j.decisions],
        "dropped": [
            {
                "competition": d.competition,
                "hotkey": d.hotkey,
                "uid": d.uid,
                "reason": d.reason.value,
                "kept": d.kept,
                "kept_competition": d.kept_competition,
            }
            for d in j.dropped
        ],
    }


def decision_to_dict(d: Decision) -> dict[str, Any]:
    return {
        "competition": d.competition,
        "metric": d.metric.value,
        "rule": d.rule.value,
        "best": _entrant(d.best),
        "incumbent": _entrant(d.incumbent),
        "previous": None if d.previous is None else d.previous.to_dict(),
        "threshold": d.threshold,
        "target": d.target,
        "winner": None if d.winner is None else {**d.winner.to_dict(), "uid": d.winner_uid},
        "winner_share": d.winner_share,
        "remainder": [
            {
                "hotkey": r.hotkey,
                "uid": r.uid,
                "average": r.average,
                "ratio": r.ratio,
                "share": r.share,
            }
            for r in d.remainder
        ],
        "remainder_unpaid": d.remainder_unpaid,
        "excluded": [
            {"hotkey": x.hotkey, "uid": x.uid, "reason": x.reason.value} for x in d.excluded
        ],
    }


def _entrant(e: Entrant | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"hotkey": e.hotkey, "uid": e.uid, "block": e.block, "average": e.average}
