"""Judging against a miner who games it (issue 14): the unprocessed-input gate, validator-permit
holders, copies across competitions, no payable uid; and properties over random epochs."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundsright_async.competitions import COMPETITIONS, Metric, get_competition
from soundsright_async.validator.judging import (
    GATE_METRICS,
    METRIC_RANGES,
    Decision,
    Dropped,
    DropReason,
    EpochInput,
    Exclusion,
    ExclusionReason,
    Judgement,
    ModelResult,
    Rule,
    WeightsRule,
    WinnerRecord,
    decide_weights,
    dedup_epoch,
    judge_epoch,
    weights_from_scores,
)

D16 = "DENOISING_16000HZ"
R16 = "DEREVERBERATION_16000HZ"
D48 = "DENOISING_48000HZ"
R48 = "DEREVERBERATION_48000HZ"
PESQ, ESTOI = Metric.PESQ, Metric.ESTOI
SI_SDR, SI_SIR, SI_SAR = Metric.SI_SDR, Metric.SI_SIR, Metric.SI_SAR
EXACT = 1e-12

# DENOISING_48000HZ, --count 4 --seed 7 (measured): the unprocessed input = a passthrough.
UNPROCESSED_D48 = {ESTOI: 0.6043, SI_SDR: 4.5278, SI_SIR: 4.5278, SI_SAR: 100.0}
SPECTRAL_GATE = {ESTOI: 0.6148, SI_SDR: 5.8796, SI_SIR: 7.1860, SI_SAR: 12.3089}


def hks(n: int) -> tuple[str, ...]:
    return tuple(f"hk{i}" for i in range(n))


def res(hotkey: str, block: int | None, **metrics: float) -> ModelResult:
    return ModelResult(hotkey, block, {Metric(m): v for m, v in metrics.items()})


def decision(j: Judgement, competition: str, metric: Metric) -> Decision:
    (d,) = [d for d in j.decisions if d.competition == competition and d.metric == metric]
    return d


def test_gate_metrics() -> None:
    assert GATE_METRICS == {D16: PESQ, R16: PESQ, D48: SI_SDR, R48: SI_SDR}
    assert METRIC_RANGES[PESQ] == (-0.5, 4.644)


# --------------------------------------------------------------------------- the gate


def test_the_passthrough_wins_nothing_and_the_denoiser_everything() -> None:
    epoch = EpochInput(
        hotkeys=("pass", "gate"),
        unprocessed={D48: UNPROCESSED_D48},
        previous_winners={D48: {SI_SAR: WinnerRecord("pass", 1000, 100.0)}},
        results={
            D48: [
                ModelResult("pass", 1000, UNPROCESSED_D48),
                ModelResult("gate", 2000, SPECTRAL_GATE),
            ]
        },
    )
    j = judge_epoch(epoch)
    assert j.scores == (0.0, 45.0)
    assert j.weights == (0.0, 1.0)
    for metric in get_competition(D48).metrics:
        d = decision(j, D48, metric)
        assert d.excluded == (Exclusion("pass", 0, ExclusionReason.NO_IMPROVEMENT),)
        assert d.winner == WinnerRecord("gate", 2000, SPECTRAL_GATE[metric])
    assert decision(j, D48, SI_SAR).rule is Rule.NO_INCUMBENT


@pytest.mark.parametrize(
    ("gate_average", "candidate"),
    [(4.5278, False), (4.5277, False), (4.52780001, True), (None, False)],
)
def test_the_gate_is_strictly_above_and_a_missing_gate_average_fails(
    gate_average: float | None, candidate: bool
) -> None:
    metrics = {ESTOI: 0.9, SI_SIR: 20.0, SI_SAR: 20.0}
    if gate_average is not None:
        metrics[SI_SDR] = gate_average
    j = judge_epoch(
        EpochInput(
            hotkeys=("a",),
            unprocessed={D48: UNPROCESSED_D48},
            results={D48: [ModelResult("a", 1, metrics)]},
        )
    )
    d = decision(j, D48, ESTOI)
    assert (d.winner_uid == 0) is candidate
    assert d.excluded == (() if candidate else (Exclusion("a", 0, ExclusionReason.NO_IMPROVEMENT),))


def test_pesq_gates_the_16k_competitions_and_only_the_given_ones() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=("a", "b"),
            unprocessed={D16: {PESQ: 1.5, ESTOI: 0.99}},  # ESTOI is no gate: 0.8 still counts
            results={
                D16: [res("a", 1, PESQ=1.6, ESTOI=0.8), res("b", 1, PESQ=1.5, ESTOI=0.95)],
                R16: [res("b", 1, PESQ=1.0, ESTOI=0.5)],  # no unprocessed for R16: no gate
            },
        )
    )
    assert j.competition_scores[D16] == (10.0, 0.0)
    assert j.competition_scores[R16] == (0.0, 10.0)
    assert decision(j, D16, ESTOI).excluded == (Exclusion("b", 1, ExclusionReason.NO_IMPROVEMENT),)


def test_a_gated_out_previous_winner_loses_its_title_an_absent_one_keeps_it() -> None:
    previous = {D48: {SI_SAR: WinnerRecord("pass", 10, 100.0)}}
    entered = EpochInput(
        hotkeys=("pass",),
        unprocessed={D48: UNPROCESSED_D48},
        previous_winners=previous,
        results={D48: [ModelResult("pass", 10, UNPROCESSED_D48)]},
    )
    d = decision(judge_epoch(entered), D48, SI_SAR)
    assert (d.rule, d.winner, d.winner_share) == (Rule.PREVIOUS_EXCLUDED, None, 0.0)
    absent = EpochInput(
        hotkeys=("pass",), unprocessed={D48: UNPROCESSED_D48}, previous_winners=previous
    )
    d = decision(judge_epoch(absent), D48, SI_SAR)
    assert (d.rule, d.winner_uid, d.winner_share) == (Rule.PREVIOUS_KEPT, 0, 9.0)


def test_the_gate_closes_the_remainder_sink() -> None:
    """A broken (or sybil) candidate at -100 dB moved everyone's remainder share: hk2's share of
    the pool went from 0.1 to 0.48. Below the unprocessed input it is no candidate at all."""
    results = [res("hk0", 1, SI_SDR=10.0), res("hk1", 1, SI_SDR=9.0), res("hk2", 1, SI_SDR=1.0)]
    sybil = res("hk3", 1, SI_SDR=-100.0)
    plain = judge_epoch(EpochInput(hotkeys=hks(4), results={R48: results}))
    sunk = judge_epoch(EpochInput(hotkeys=hks(4), results={R48: [*results, sybil]}))
    assert plain.competition_scores[R48] == pytest.approx([8.0, 1.8, 0.2, 0.0], rel=EXACT)
    assert sunk.competition_scores[R48] == pytest.approx(
        [8.0, 2.0 * 109 / 210, 2.0 * 101 / 210, 0.0], rel=EXACT
    )
    gated = judge_epoch(
        EpochInput(
            hotkeys=hks(4),
            unprocessed={R48: {ESTOI: 0.5, SI_SDR: 0.5}},
            results={R48: [*results, sybil]},
        )
    )
    assert gated.competition_scores[R48] == plain.competition_scores[R48]
    assert decision(gated, R48, SI_SDR).excluded == (
        Exclusion("hk3", 3, ExclusionReason.NO_IMPROVEMENT),
    )


def test_unprocessed_needs_the_gate_metric() -> None:
    with pytest.raises(ValueError, match=r"unprocessed\.DENOISING_48000HZ: needs SI_SDR"):
        EpochInput(hotkeys=(), unprocessed={D48: {ESTOI: 0.5}})
    with pytest.raises(ValueError, match="averages must be finite"):
        EpochInput(hotkeys=(), unprocessed={D48: {SI_SDR: math.nan}})
    with pytest.raises(ValueError, match="burn_uid: uid 1 is not registered"):
        EpochInput(hotkeys=("a",), burn_uid=1)


# --------------------------------------------------------------------------- permits


def test_a_permit_holder_is_no_candidate_and_cannot_keep_a_title() -> None:
    previous = {D16: {PESQ: WinnerRecord("val", 5, 3.0)}}
    j = judge_epoch(
        EpochInput(
            hotkeys=("val", "a"),
            validator_permits=(True, False),
            previous_winners=previous,
            results={D16: [res("val", 5, PESQ=3.2, ESTOI=0.95), res("a", 9, PESQ=2.0, ESTOI=0.8)]},
        )
    )
    d = decision(j, D16, PESQ)
    assert (d.rule, d.winner_uid, d.incumbent) == (Rule.NO_INCUMBENT, 1, None)
    assert d.excluded == (Exclusion("val", 0, ExclusionReason.VALIDATOR_PERMIT),)
    assert j.scores == (0.0, 10.0)
    # Nobody else entered: the permit holder's old title pays nobody.
    alone = judge_epoch(
        EpochInput(hotkeys=("val", "a"), validator_permits=(True, False), previous_winners=previous)
    )
    assert decision(alone, D16, PESQ).rule is Rule.PREVIOUS_EXCLUDED
    assert (alone.scores, alone.weights_rule) == ((0.0, 0.0), WeightsRule.FALLBACK)


# --------------------------------------------------------------------------- dedup


def test_copies_are_dropped_across_competitions_the_earliest_commitment_wins() -> None:
    uids = {h: i for i, h in enumerate(hks(5))}
    kept, dropped = dedup_epoch(
        {
            D16: [ModelResult("hk2", 30, {}, model_hash="A")],
            R48: [ModelResult("hk1", 20, {}, model_hash="A")],  # earlier, in a later competition
            R16: [ModelResult("hk3", 40, {}, namespace="n", name="m", revision="r")],
            D48: [
                ModelResult("hk4", 50, {}, namespace="n", name="m", revision="r"),
                ModelResult("hk0", 60, {}, ckpt_hashes=frozenset({"c"})),
            ],
        },
        uids,
    )
    assert {c: [r.hotkey for r in rs] for c, rs in kept.items()} == {
        D16: [],
        R48: ["hk1"],
        R16: ["hk3"],
        D48: ["hk0"],
    }
    assert dropped == (
        Dropped(D16, "hk2", 2, DropReason.SAME_MODEL_HASH, "hk1", R48),
        Dropped(D48, "hk4", 4, DropReason.SAME_METADATA, "hk3", R16),
    )


def test_a_hotkey_never_duplicates_itself_across_competitions() -> None:
    uids = {"a": 0, "b": 1}
    same = ModelResult("a", 10, {}, model_hash="H", ckpt_hashes=frozenset({"c"}))
    kept, dropped = dedup_epoch(
        {D16: [same], R16: [same], D48: [ModelResult("b", 5, {}, ckpt_hashes=frozenset({"c"}))]},
        uids,
    )
    assert (kept[D16], kept[R16]) == ((), ())
    assert dropped == (
        Dropped(D16, "a", 0, DropReason.SHARED_CHECKPOINT, "b", D48),
        Dropped(R16, "a", 0, DropReason.SHARED_CHECKPOINT, "b", D48),
    )
    kept, dropped = dedup_epoch({D16: [same], R16: [same]}, uids)
    assert (kept[D16], kept[R16], dropped) == ((same,), (same,), ())


def test_judge_epoch_drops_a_sibling_copy_and_pays_the_original() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=("orig", "copy"),
            results={
                D16: [ModelResult("orig", 1, {PESQ: 2.0, ESTOI: 0.8}, model_hash="A")],
                R16: [ModelResult("copy", 2, {PESQ: 2.0, ESTOI: 0.8}, model_hash="A")],
            },
        )
    )
    assert j.scores == (10.0, 0.0)
    assert j.dropped == (Dropped(R16, "copy", 1, DropReason.SAME_MODEL_HASH, "orig", D16),)


# --------------------------------------------------------------------------- weights


def test_no_payable_uid_means_no_weights_never_all_zero() -> None:
    assert decide_weights([5.0, 0.0], [True, True]) == ((), WeightsRule.NO_PAYABLE_UID)
    assert decide_weights([], []) == ((), WeightsRule.NO_PAYABLE_UID)
    assert decide_weights([0.0, 0.0], [False, False], "none") == ((), WeightsRule.NO_PAYABLE_UID)
    # The burn uid may hold a permit (an owner's key): it is a sink, not a miner.
    assert decide_weights([5.0, 0.0], [True, True], burn_uid=0) == (
        (1.0, 0.0),
        WeightsRule.BURN_UID,
    )
    assert decide_weights([0.0, 0.0], [False, False], "none", 1) == (
        (0.0, 1.0),
        WeightsRule.BURN_UID,
    )
    # Scores or a fallback with targets come first; the burn uid is only the last resort.
    assert decide_weights([0.0, 2.0], [True, False], burn_uid=0) == ((0.0, 1.0), WeightsRule.SCORES)
    assert decide_weights([0.0, 0.0], [True, False], burn_uid=0) == (
        (0.0, 1.0),
        WeightsRule.FALLBACK,
    )
    assert weights_from_scores([5.0], [True], burn_uid=0) == ((1.0,), True)
    with pytest.raises(ValueError, match="burn_uid 2 is not one of the 2 uids"):
        decide_weights([0.0, 0.0], burn_uid=2)


def test_judge_epoch_with_only_validators() -> None:
    epoch = EpochInput(hotkeys=hks(2), validator_permits=(True, True))
    j = judge_epoch(epoch)
    assert (j.weights, j.weights_rule, j.fallback_used) == ((), WeightsRule.NO_PAYABLE_UID, True)
    j = judge_epoch(EpochInput(hotkeys=hks(2), validator_permits=(True, True), burn_uid=1))
    assert (j.weights, j.weights_rule) == ((0.0, 1.0), WeightsRule.BURN_UID)


# --------------------------------------------------------------------------- properties

GRID = {
    PESQ: [-0.5, 1.0, 1.5, 2.0, 2.5, 3.5, 4.5],
    ESTOI: [-1.0, -0.2, 0.0, 0.5, 0.7, 0.9, 1.0],
    SI_SDR: [-100.0, -5.0, 0.0, 3.0, 5.0, 12.0, 100.0],
    SI_SIR: [-100.0, -5.0, 0.0, 3.0, 5.0, 12.0, 100.0],
    SI_SAR: [-100.0, -5.0, 0.0, 3.0, 5.0, 12.0, 100.0],
}
N_MAX = 5


@st.composite
def gated_epochs(draw: st.DrawFn) -> EpochInput:
    """Random epochs where some competitions have an unprocessed input; every result is unique
    (no hashes) unless drawn otherwise."""
    n = draw(st.integers(1, N_MAX))
    hotkeys = hks(n)
    permits = tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    results: dict[str, list[ModelResult]] = {}
    unprocessed: dict[str, dict[Metric, float]] = {}
    previous: dict[str, dict[Metric, WinnerRecord]] = {}
    for comp in COMPETITIONS:
        if draw(st.booleans()):
            unprocessed[comp.name] = {m: draw(st.sampled_from(GRID[m])) for m in comp.metrics}
        who = draw(st.lists(st.sampled_from(hotkeys), unique=True, max_size=n))
        results[comp.name] = [
            ModelResult(
                hk,
                draw(st.integers(0, 100)),
                {
                    m: draw(st.sampled_from(GRID[m]))
                    for m in comp.metrics
                    if draw(st.integers(0, 4))
                },
                model_hash=draw(st.sampled_from([None, None, None, "A"])),
            )
            for hk in who
        ]
        previous[comp.name] = {
            m: WinnerRecord(draw(st.sampled_from(hotkeys)), draw(st.integers(0, 100)), 1.0)
            for m in comp.metrics
            if draw(st.booleans())
        }
    return EpochInput(
        hotkeys=hotkeys,
        validator_permits=permits,
        unprocessed=unprocessed,
        previous_winners=previous,
        results=results,
        fallback="none",
    )


@settings(max_examples=150, deadline=None)
@given(gated_epochs(), st.data())
def test_property_the_passthrough_never_scores(epoch: EpochInput, data: st.DataObject) -> None:
    """A result equal to the unprocessed input, entered with any block (even the earliest) and
    even as the previous winner of every metric, gets no points and no weight."""
    gated = [c for c in COMPETITIONS if c.name in epoch.unprocessed]
    entered = data.draw(st.lists(st.sampled_from(gated), unique=True)) if gated else []
    block = data.draw(st.integers(0, 100))
    results = {c: list(rs) for c, rs in epoch.results.items()}
    previous = {c: dict(ws) for c, ws in epoch.previous_winners.items()}
    for comp in entered:
        results[comp.name].append(ModelResult("pass", block, epoch.unprocessed[comp.name]))
        for m in comp.metrics:
            previous[comp.name][m] = WinnerRecord("pass", block, epoch.unprocessed[comp.name][m])
    with_pass = EpochInput(
        hotkeys=(*epoch.hotkeys, "pass"),
        validator_permits=(*epoch.validator_permits, False),
        unprocessed=epoch.unprocessed,
        previous_winners=previous,
        results=results,
        fallback="none",
    )
    j = judge_epoch(with_pass)
    uid = len(epoch.hotkeys)
    assert j.scores[uid] == 0.0
    assert not j.weights or j.weights[uid] == 0.0
    assert all(d.winner is None or d.winner.hotkey != "pass" for d in j.decisions)


@settings(max_examples=150, deadline=None)
@given(gated_epochs(), st.data())
def test_property_an_excluded_result_changes_no_one_elses_share(
    epoch: EpochInput, data: st.DataObject
) -> None:
    """Add one result that is excluded (below the gate, or from a permit holder) and carries no
    hash: every other uid's points are exactly what they were."""
    options = [
        (c, hk)
        for c in COMPETITIONS
        for uid, hk in enumerate(epoch.hotkeys)
        if hk not in {r.hotkey for r in epoch.results[c.name]}
        and (c.name in epoch.unprocessed or epoch.has_permit(uid))
    ]
    if not options:
        return
    comp, hotkey = data.draw(st.sampled_from(options))
    metrics = {m: data.draw(st.sampled_from(GRID[m])) for m in comp.metrics}
    gate = epoch.gate(comp.name)
    if gate is not None and not epoch.has_permit(epoch.hotkeys.index(hotkey)):
        metrics[GATE_METRICS[comp.name]] = data.draw(
            st.sampled_from([v for v in GRID[GATE_METRICS[comp.name]] if v <= gate])
        )
    results = {c: list(rs) for c, rs in epoch.results.items()}
    results[comp.name].append(ModelResult(hotkey, data.draw(st.integers(0, 100)), metrics))
    before = judge_epoch(epoch)
    after = judge_epoch(
        EpochInput(
            hotkeys=epoch.hotkeys,
            validator_permits=epoch.validator_permits,
            unprocessed=epoch.unprocessed,
            previous_winners=epoch.previous_winners,
            results=results,
            fallback="none",
        )
    )
    uid = epoch.hotkeys.index(hotkey)
    for name, vector in before.competition_scores.items():
        for other, points in enumerate(vector):
            if other != uid:
                assert after.competition_scores[name][other] == points
    assert after.dropped == before.dropped
    assert after.competition_scores[comp.name][uid] <= before.competition_scores[comp.name][uid]


@settings(max_examples=150, deadline=None)
@given(gated_epochs())
def test_property_the_gate_bounds_the_si_remainder_origin(epoch: EpochInput) -> None:
    """In a gated 48 kHz competition every SI_SDR candidate is above the unprocessed input's
    SI-SDR, so the remainder origin s = min(0, w, averages) never drops below min(0, gate)."""
    j = judge_epoch(epoch)
    for d in j.decisions:
        gate = epoch.gate(d.competition)
        if gate is None or d.metric is not SI_SDR or d.winner is None or d.best is None:
            continue
        averages = [d.winner.average, *(r.average for r in d.remainder)]
        assert min(averages) > gate
        assert min(0.0, *averages) >= min(0.0, gate)
        assert math.fsum(r.share for r in d.remainder) <= 2.0 * (1 + EXACT)


def test_what_the_gate_leaves_open_estoi_origin_moves_at_most_to_its_floor() -> None:
    """docs/judging.md §4: a gate-passing result with ESTOI -1 (the range's floor) shifts the
    ESTOI origin from 0 to -1 and no further; the shift is bounded and takes nothing itself."""
    results = [res("hk0", 1, PESQ=3.0, ESTOI=0.9), res("hk1", 1, PESQ=2.5, ESTOI=0.8)]
    results.append(res("hk2", 1, PESQ=2.0, ESTOI=0.4))
    low = res("hk3", 1, PESQ=1.6, ESTOI=-1.0)
    unprocessed = {D16: {PESQ: 1.5, ESTOI: 0.7}}
    plain = judge_epoch(EpochInput(hotkeys=hks(4), unprocessed=unprocessed, results={D16: results}))
    shifted = judge_epoch(
        EpochInput(hotkeys=hks(4), unprocessed=unprocessed, results={D16: [*results, low]})
    )
    assert [r.share for r in decision(plain, D16, ESTOI).remainder] == pytest.approx(
        [1.2 * 0.8 / 1.2, 1.2 * 0.4 / 1.2], rel=EXACT
    )
    assert [r.share for r in decision(shifted, D16, ESTOI).remainder] == pytest.approx(
        [1.2 * 1.8 / 3.2, 1.2 * 1.4 / 3.2, 0.0], rel=EXACT
    )


@settings(max_examples=100, deadline=None)
@given(gated_epochs(), st.randoms(use_true_random=False))
def test_property_gated_judging_does_not_depend_on_input_order(
    epoch: EpochInput, rng: random.Random
) -> None:
    names = list(epoch.results)
    rng.shuffle(names)
    shuffled = EpochInput(
        hotkeys=epoch.hotkeys,
        validator_permits=epoch.validator_permits,
        unprocessed=dict(reversed(list(epoch.unprocessed.items()))),
        previous_winners=epoch.previous_winners,
        results={c: rng.sample(list(epoch.results[c]), len(epoch.results[c])) for c in names},
        fallback="none",
    )
    assert judge_epoch(shuffled) == judge_epoch(epoch)


def test_known_limit_a_near_passthrough_blend_still_takes_si_sar() -> None:
    """docs/judging.md §3 (measured): 0.99 · input + 0.01 · spectral gate passes the gate by
    0.02 dB and takes SI_SAR; the gate cannot close this, a rule change for SI_SAR would."""
    blend = {ESTOI: 0.6046, SI_SDR: 4.5485, SI_SIR: 4.5485, SI_SAR: 53.2129}
    j = judge_epoch(
        EpochInput(
            hotkeys=("blend", "gate"),
            unprocessed={D48: UNPROCESSED_D48},
            results={D48: [ModelResult("blend", 1, blend), ModelResult("gate", 2, SPECTRAL_GATE)]},
        )
    )
    assert {d.metric: d.winner_uid for d in j.decisions if d.competition == D48} == {
        ESTOI: 1,
        SI_SDR: 1,
        SI_SIR: 1,
        SI_SAR: 0,
    }
