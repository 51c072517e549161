"""Judging: reference scenarios (validator.md §11) where our rules agree, each fixed behaviour,
and properties over random epochs."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundsright_async.competitions import COMPETITIONS, Metric, get_competition
from soundsright_async.validator.judging import (
    Decision,
    Dropped,
    DropReason,
    Entrant,
    EpochInput,
    Exclusion,
    ExclusionReason,
    Judgement,
    ModelResult,
    Rule,
    WeightsRule,
    WinnerRecord,
    dedup_results,
    improvement_factor,
    judge_epoch,
    remainder_shares,
    surpasses,
    total_scores,
    weights_from_scores,
)

D16 = "DENOISING_16000HZ"
R16 = "DEREVERBERATION_16000HZ"
D48 = "DENOISING_48000HZ"
R48 = "DEREVERBERATION_48000HZ"
PESQ, ESTOI, SI_SDR = Metric.PESQ, Metric.ESTOI, Metric.SI_SDR
EXACT = 1e-12  # relative tolerance: float rounding only


def hks(n: int) -> tuple[str, ...]:
    return tuple(f"hk{i}" for i in range(n))


def res(hotkey: str, block: int | None, **metrics: float) -> ModelResult:
    return ModelResult(hotkey, block, {Metric(m): v for m, v in metrics.items()})


def decision(j: Judgement, competition: str, metric: Metric) -> Decision:
    (d,) = [d for d in j.decisions if d.competition == competition and d.metric == metric]
    return d


def scores_of(j: Judgement, competition: str) -> list[float]:
    return list(j.competition_scores[competition])


# --------------------------------------------------------------------------- A3, A4: threshold


@pytest.mark.parametrize(
    ("new_block", "old_block", "expected"),
    [
        (0, 0, 0.0035),
        (50400, 0, 0.0015),
        (25200, 0, 0.0025),
        (100000, 0, 0.0015),
        (30000, 10000, 0.0035 - 20000 / 50400 * 0.002),  # 0.0027063 in the reference table
        (10, 100, 0.0035),  # a negative difference is clamped
    ],
)
def test_a3_improvement_factor(new_block: int, old_block: int, expected: float) -> None:
    assert improvement_factor(new_block, old_block) == pytest.approx(expected, rel=EXACT)


def test_a3_factor_rounds_like_the_reference_table() -> None:
    assert round(improvement_factor(30000, 10000), 7) == 0.0027063


@pytest.mark.parametrize(
    ("new", "new_block", "old", "old_block", "expected"),
    [
        (1.01, 0, 1, 0, True),
        (1.007, 25200, 1, 0, True),
        (1.0015, 50400, 1, 0, True),
        (1.0014, 50400, 1, 0, False),
        (1.0, 0, 1, 0, False),
        (1.02, 0, 1.01, 10000, True),
        (1.0002, 50400, 1, 0, False),
        (0.99, 0, 1, 0, False),
        (1.0034, 0, 1, 0, False),
    ],
)
def test_a4_surpasses(
    new: float, new_block: int, old: float, old_block: int, expected: bool
) -> None:
    assert surpasses(new, new_block, old, old_block) is expected


# --------------------------------------------------------------------------- A5-A13


def test_a5_two_metrics_with_baseline_and_remainders() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(4),
            baseline={D16: {PESQ: 2.2, ESTOI: 0.82}},
            results={
                D16: [
                    res("hk1", 100, PESQ=2.5, ESTOI=0.85),
                    res("hk2", 90, PESQ=2.4, ESTOI=0.88),
                    res("hk3", 80, PESQ=2.0, ESTOI=0.80),
                ]
            },
        )
    )
    expected = [
        0.0,
        6.0 + 1.2 * 0.85 / 1.65,
        4.0 + 1.8 * 2.4 / 4.4,
        1.8 * 2.0 / 4.4 + 1.2 * 0.80 / 1.65,
    ]
    assert scores_of(j, D16) == pytest.approx(expected, rel=EXACT)
    assert scores_of(j, D16) == pytest.approx([0, 6.618182, 4.981818, 1.4], abs=5e-7)
    assert j.winners == {
        D16: {PESQ: WinnerRecord("hk1", 100, 2.5), ESTOI: WinnerRecord("hk2", 90, 0.88)},
        R16: {},
        D48: {},
        R48: {},
    }
    pesq = decision(j, D16, PESQ)
    assert (pesq.rule, pesq.winner_uid, pesq.winner_share) == (Rule.NO_INCUMBENT, 1, 6.0)
    assert [(r.uid, r.ratio) for r in pesq.remainder] == [(2, 0.96), (3, 0.8)]
    assert pesq.remainder_unpaid == 0.0
    # Our weights sum to 1; divided by the largest they are the reference's weights.
    assert j.scores == j.competition_scores[D16]
    assert j.weights == pytest.approx([s / 13.0 for s in expected], rel=EXACT)
    assert [w / j.weights[1] for w in j.weights] == pytest.approx(
        [0, 1, 0.752747, 0.211538], abs=5e-7
    )
    assert not j.fallback_used


@pytest.mark.parametrize(
    ("challenger", "scores", "winner", "rule"),
    [
        (15.04, [1.0, 9.0, 0.0], "hk1", Rule.CHALLENGER_SURPASSED),
        (15.03, [9.0, 1.0, 0.0], "hk0", Rule.INCUMBENT_DEFENDED),
    ],
)
def test_a6_threshold_decays_with_the_block_gap(
    challenger: float, scores: list[float], winner: str, rule: Rule
) -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(3),
            previous_winners={D48: {SI_SDR: WinnerRecord("hk0", 1000, 14.0)}},
            results={D48: [res("hk0", 1000, SI_SDR=15.0), res("hk1", 26200, SI_SDR=challenger)]},
        )
    )
    d = decision(j, D48, SI_SDR)
    assert scores_of(j, D48) == pytest.approx(scores, rel=EXACT)
    assert (d.rule, d.winner.hotkey if d.winner else None) == (rule, winner)
    assert d.threshold == pytest.approx(0.0025, rel=EXACT)
    assert d.target == pytest.approx(15.0375, rel=EXACT)
    assert d.best == Entrant("hk1", 1, 26200, challenger)
    assert d.incumbent == Entrant("hk0", 0, 1000, 15.0)
    assert d.previous == WinnerRecord("hk0", 1000, 14.0)


@pytest.mark.parametrize(
    ("challenger", "scores", "winner"),
    [
        (-1.995, [8.0, 2.0], "hk0"),  # same as the reference
        (-1.99, [0.0, 8.0], "hk1"),  # reference [2, 8]: our s = -2 gives hk0 ratio 0
    ],
)
def test_a7_negative_incumbent(challenger: float, scores: list[float], winner: str) -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(2),
            previous_winners={R48: {SI_SDR: WinnerRecord("hk0", 0, -2.0)}},
            results={R48: [res("hk0", 0, SI_SDR=-2.0), res("hk1", 0, SI_SDR=challenger)]},
        )
    )
    d = decision(j, R48, SI_SDR)
    assert d.target == pytest.approx(-1.993, rel=EXACT)
    assert scores_of(j, R48) == pytest.approx(scores, rel=EXACT)
    assert d.winner is not None
    assert d.winner.hotkey == winner
    if winner == "hk1":
        assert d.remainder_unpaid == 2.0
        assert [(r.hotkey, r.ratio, r.share) for r in d.remainder] == [("hk0", 0.0, 0.0)]


def test_a8_absent_incumbent_loses_its_share() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(2),
            previous_winners={D16: {PESQ: WinnerRecord("hk0", 5, 1.5)}},
            results={D16: [res("hk1", 50, PESQ=1.2)]},
        )
    )
    assert scores_of(j, D16) == [0.0, 6.0]
    assert decision(j, D16, PESQ).rule is Rule.NO_INCUMBENT
    assert j.winners[D16] == {PESQ: WinnerRecord("hk1", 50, 1.2)}


def test_a9_no_candidates_keeps_the_registered_previous_winner() -> None:
    prev = {PESQ: WinnerRecord("hk0", 7, 2.9), ESTOI: WinnerRecord("hk0", 7, 0.91)}
    j = judge_epoch(EpochInput(hotkeys=hks(2), previous_winners={D16: prev}))
    assert scores_of(j, D16) == [10.0, 0.0]
    assert j.winners[D16] == prev
    for metric, pool in ((PESQ, 1.8), (ESTOI, 1.2)):
        d = decision(j, D16, metric)
        assert (d.rule, d.winner_uid, d.remainder, d.remainder_unpaid) == (
            Rule.PREVIOUS_KEPT,
            0,
            (),
            pool,
        )


def test_a10_unregistered_previous_winner_gets_nothing() -> None:
    prev = {PESQ: WinnerRecord("gone", 7, 2.9), ESTOI: WinnerRecord("gone", 7, 0.91)}
    j = judge_epoch(EpochInput(hotkeys=hks(2), previous_winners={D16: prev}))
    assert scores_of(j, D16) == [0.0, 0.0]
    assert j.winners[D16] == {}
    assert decision(j, D16, PESQ).rule is Rule.NO_CANDIDATE
    assert decision(j, D16, PESQ).winner_share == 0.0


def test_a11_baseline_tie_is_not_a_candidate() -> None:
    """Fixed: the reference paid hk0 (exactly the baseline) the 1.8 remainder."""
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(2),
            baseline={D16: {PESQ: 2.2}},
            results={D16: [res("hk0", 10, PESQ=2.2), res("hk1", 10, PESQ=2.0)]},
        )
    )
    d = decision(j, D16, PESQ)
    assert scores_of(j, D16) == [0.0, 6.0]
    assert d.excluded == (Exclusion("hk0", 0, ExclusionReason.EQUALS_BASELINE),)
    assert (d.remainder, d.remainder_unpaid) == ((), 1.8)


def test_baseline_exclusion_is_exact_equality_only() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(2),
            baseline={D16: {PESQ: 2.2}},
            results={D16: [res("hk0", 10, PESQ=2.2000001), res("hk1", 10, PESQ=2.0)]},
        )
    )
    assert scores_of(j, D16) == pytest.approx([6.0, 1.8], rel=EXACT)


@pytest.mark.parametrize("flip", [False, True])
def test_a12_average_tie_goes_to_the_earlier_block(flip: bool) -> None:
    results = [res("hk2", 15, PESQ=1.1), res("hk1", 10, PESQ=1.1)]
    j = judge_epoch(EpochInput(hotkeys=hks(3), results={D16: results[::-1] if flip else results}))
    assert scores_of(j, D16) == pytest.approx([0.0, 6.0, 1.8], rel=EXACT)


@pytest.mark.parametrize("flip", [False, True])
def test_a12_equal_blocks_go_to_the_lower_uid_not_list_order(flip: bool) -> None:
    """Fixed: the reference let the first listed record win."""
    results = [res("hk2", 10, PESQ=1.1), res("hk1", 10, PESQ=1.1)]
    j = judge_epoch(EpochInput(hotkeys=hks(3), results={D16: results[::-1] if flip else results}))
    assert decision(j, D16, PESQ).winner_uid == 1


def test_a13_incumbent_that_is_still_best_wins_without_threshold() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(2),
            previous_winners={D16: {PESQ: WinnerRecord("hk0", 3, 3.0)}},
            results={D16: [res("hk0", 3, PESQ=1.0), res("hk1", 4, PESQ=0.5)]},
        )
    )
    d = decision(j, D16, PESQ)
    assert scores_of(j, D16) == pytest.approx([6.0, 1.8], rel=EXACT)
    assert (d.rule, d.threshold, d.winner) == (
        Rule.INCUMBENT_IS_BEST,
        None,
        WinnerRecord("hk0", 3, 1.0),
    )


# --------------------------------------------------------------------------- fixed behaviours


def test_a14_invalid_top_result_lets_the_best_valid_one_win() -> None:
    """Fixed B9: the reference scored nobody when the top record had ``block: None``."""
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(4),
            results={
                D16: [
                    res("hk0", None, PESQ=3.5),
                    res("hk1", 20, PESQ=2.0),
                    res("hk2", 30, PESQ=math.nan),
                    res("hk3", 40, PESQ=1.0),
                ]
            },
        )
    )
    d = decision(j, D16, PESQ)
    assert d.winner == WinnerRecord("hk1", 20, 2.0)
    assert d.excluded == (
        Exclusion("hk0", 0, ExclusionReason.NO_BLOCK),
        Exclusion("hk2", 2, ExclusionReason.NO_AVERAGE),
    )
    assert scores_of(j, D16) == pytest.approx([0.0, 6.0, 0.0, 1.8], rel=EXACT)


def test_unregistered_top_result_is_dropped_and_next_best_wins() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(2),
            results={D16: [res("stranger", 1, PESQ=4.0), res("hk1", 20, PESQ=2.0)]},
        )
    )
    assert decision(j, D16, PESQ).winner_uid == 1
    assert j.dropped == (Dropped(D16, "stranger", None, DropReason.UNREGISTERED),)


def test_a15_negative_averages_never_pay_negative_or_beyond_the_pool() -> None:
    """Fixed B8: the reference gave [8, -2, 4] (a negative share and 4 from a pool of 2)."""
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(3),
            results={
                R48: [
                    res("hk0", 1, SI_SDR=5.0),
                    res("hk1", 1, SI_SDR=-1.0),
                    res("hk2", 1, SI_SDR=2.0),
                ]
            },
        )
    )
    d = decision(j, R48, SI_SDR)
    assert scores_of(j, R48) == [8.0, 0.0, 2.0]
    assert [(r.uid, r.ratio, r.share) for r in d.remainder] == [(1, 0.0, 0.0), (2, 0.5, 2.0)]
    assert j.weights == pytest.approx([0.8, 0.0, 0.2], rel=EXACT)


def test_negative_remainder_splits_by_distance_from_the_lowest() -> None:
    # w = -1, s = -4: ratios (−2+4)/3 and (−4+4)/3 and (−1+4)/3 → 2/3, 0, 1.
    shares, unpaid = remainder_shares(
        3.0, -1.0, [Entrant("a", 1, 0, -2.0), Entrant("b", 2, 0, -4.0), Entrant("c", 3, 0, -1.0)]
    )
    assert [r.ratio for r in shares] == pytest.approx([2 / 3, 0.0, 1.0], rel=EXACT)
    assert [r.share for r in shares] == pytest.approx([1.2, 0.0, 1.8], rel=EXACT)
    assert unpaid == 0.0


def test_remainder_when_the_winner_is_the_lowest_and_negative() -> None:
    # The incumbent (-2) defended against -1.999 and -1.997: they share by distance from it.
    shares, unpaid = remainder_shares(
        1.0, -2.0, [Entrant("a", 1, 0, -1.999), Entrant("b", 2, 0, -1.997)]
    )
    assert [r.share for r in shares] == pytest.approx([0.25, 0.75], rel=1e-9)
    assert [r.ratio for r in shares] == [None, None]
    # All tie the winner: equal split.
    shares, unpaid = remainder_shares(
        1.0, -2.0, [Entrant("a", 1, 0, -2.0), Entrant("b", 2, 0, -2.0)]
    )
    assert ([r.share for r in shares], unpaid) == ([0.5, 0.5], 0.0)


def test_remainder_average_zero_below_a_positive_winner_gets_nothing() -> None:
    shares, unpaid = remainder_shares(1.8, 2.0, [Entrant("a", 1, 0, 0.0)])
    assert ([(r.ratio, r.share) for r in shares], unpaid) == ([(0.0, 0.0)], 1.8)
    assert remainder_shares(1.8, 2.0, []) == ((), 1.8)


def test_uid_zero_is_a_normal_miner() -> None:
    """Fixed B4: ``if not uid`` rejected uid 0 in the reference."""
    j = judge_epoch(EpochInput(hotkeys=hks(3), results={D16: [res("hk0", 0, PESQ=1.0)]}))
    assert decision(j, D16, PESQ).winner_uid == 0
    assert j.scores == (6.0, 0.0, 0.0)
    assert j.weights == (1.0, 0.0, 0.0)


def test_metadata_fields_do_not_change_judging() -> None:
    """Fixed B1: records carrying more than the judged fields are judged like bare ones."""
    bare = [res("hk0", 5, PESQ=1.0), res("hk1", 6, PESQ=2.0)]
    rich = [
        ModelResult("hk0", 5, {PESQ: 1.0}, "h0", "ns", "a", "r0", frozenset({"c0"})),
        ModelResult("hk1", 6, {PESQ: 2.0}, "h1", "ns", "b", "r1", frozenset({"c1"})),
    ]
    a = judge_epoch(EpochInput(hotkeys=hks(2), results={D16: bare}))
    b = judge_epoch(EpochInput(hotkeys=hks(2), results={D16: rich}))
    assert a == b
    assert b.dropped == ()


# --------------------------------------------------------------------------- A24: dedup

UIDS = {f"hk{i}": i for i in range(6)}


def kept_hotkeys(results: list[ModelResult]) -> list[str]:
    kept, _ = dedup_results(D16, results, UIDS)
    return [r.hotkey for r in kept]


def test_a24_same_hash_keeps_the_earliest_block() -> None:
    results = [
        ModelResult("hk1", 10, {}, model_hash="A"),
        ModelResult("hk2", 20, {}, model_hash="A"),
        ModelResult("hk3", 15, {}, model_hash="B"),
    ]
    kept, dropped = dedup_results(D16, results, UIDS)
    assert [r.hotkey for r in kept] == ["hk1", "hk3"]
    assert dropped == (Dropped(D16, "hk2", 2, DropReason.SAME_MODEL_HASH, "hk1", D16),)


def test_a24_same_hash_and_block_keeps_the_lower_uid() -> None:
    results = [ModelResult("hk2", 5, {}, model_hash="A"), ModelResult("hk1", 5, {}, model_hash="A")]
    assert kept_hotkeys(results) == ["hk1"]


def test_a24_same_metadata_keeps_the_earliest_block() -> None:
    results = [
        ModelResult("hk1", 20, {}, namespace="ns", name="m", revision="r"),
        ModelResult("hk2", 10, {}, namespace="ns", name="m", revision="r"),
        ModelResult("hk3", 5, {}, namespace="ns", name="m", revision="other"),
        ModelResult("hk4", 1, {}, namespace="nsm", name="", revision="r"),  # no concatenation clash
    ]
    kept, dropped = dedup_results(D16, results, UIDS)
    assert [r.hotkey for r in kept] == ["hk4", "hk3", "hk2"]
    assert dropped == (Dropped(D16, "hk1", 1, DropReason.SAME_METADATA, "hk2", D16),)


def test_a24_shared_checkpoint_is_greedy_in_block_order() -> None:
    results = [
        ModelResult("hk1", 5, {}, ckpt_hashes=frozenset({"a", "b"})),
        ModelResult("hk2", 10, {}, ckpt_hashes=frozenset({"b", "c"})),
        ModelResult("hk3", 7, {}, ckpt_hashes=frozenset({"d"})),
        ModelResult("hk4", 8, {}, ckpt_hashes=frozenset({"c"})),  # c is free: hk2 was dropped
        ModelResult("hk5", 9, {}),  # no checkpoint hashes never conflict
    ]
    kept, dropped = dedup_results(D16, results, UIDS)
    assert [r.hotkey for r in kept] == ["hk1", "hk3", "hk4", "hk5"]
    assert dropped == (Dropped(D16, "hk2", 2, DropReason.SHARED_CHECKPOINT, "hk1", D16),)


def test_a24_rules_run_in_order_on_the_survivors() -> None:
    # hk2 loses on hash to hk1, so it cannot claim metadata against hk3.
    results = [
        ModelResult("hk1", 1, {}, model_hash="A"),
        ModelResult("hk2", 2, {}, model_hash="A", namespace="n", name="m", revision="r"),
        ModelResult("hk3", 3, {}, namespace="n", name="m", revision="r"),
    ]
    assert kept_hotkeys(results) == ["hk1", "hk3"]


def test_a24_unknown_block_sorts_last() -> None:
    results = [
        ModelResult("hk0", None, {}, model_hash="A"),
        ModelResult("hk5", 99, {}, model_hash="A"),
    ]
    assert kept_hotkeys(results) == ["hk5"]


def test_dedup_runs_before_judging() -> None:
    j = judge_epoch(
        EpochInput(
            hotkeys=hks(3),
            results={
                D16: [
                    ModelResult("hk2", 50, {PESQ: 3.0}, model_hash="X"),  # the copy scores higher
                    ModelResult("hk1", 40, {PESQ: 2.9}, model_hash="X"),
                    ModelResult("hk0", 60, {PESQ: 1.0}),
                ]
            },
        )
    )
    assert decision(j, D16, PESQ).winner_uid == 1
    assert scores_of(j, D16) == pytest.approx([1.8, 6.0, 0.0], rel=EXACT)


# --------------------------------------------------------------------------- A16: weights


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.0, 6.6, 3.3, 0.0], [0.0, 2 / 3, 1 / 3, 0.0]),  # reference (max-normalised) [0,1,.5,0]
        ([1.0, 1.0], [0.5, 0.5]),
        ([0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]),  # fallback "miners", nobody has a permit
    ],
)
def test_a16_weights_sum_to_one(scores: list[float], expected: list[float]) -> None:
    weights, _ = weights_from_scores(scores)
    assert list(weights) == pytest.approx(expected, rel=EXACT)


def test_weights_reject_negative_or_non_finite_scores() -> None:
    with pytest.raises(ValueError, match=r"uids \[0\]"):
        weights_from_scores([-1.0, 2.0])
    with pytest.raises(ValueError, match=r"uids \[1\]"):
        weights_from_scores([1.0, math.inf])


def test_fallback_skips_validators() -> None:
    assert weights_from_scores([0, 0, 0, 0], [True, False, True, False]) == (
        (0.0, 0.5, 0.0, 0.5),
        True,
    )
    assert weights_from_scores([0, 0], [False, False], "none") == ((), True)
    assert weights_from_scores([0, 0, 0], [True, False, False], (2,)) == ((0.0, 0.0, 1.0), True)
    with pytest.raises(ValueError, match="validator permit"):
        weights_from_scores([0, 0], [True, False], (0,))


def test_validators_never_get_weight_even_when_they_score() -> None:
    assert weights_from_scores([6.0, 2.0, 0.0], [True, False, False]) == ((0.0, 1.0, 0.0), False)
    # Only a validator scored: that counts as "no score", so the fallback applies.
    assert weights_from_scores([6.0, 0.0, 0.0], [True, False, False]) == ((0.0, 0.5, 0.5), True)


def test_epoch_without_any_score_uses_the_fallback() -> None:
    j = judge_epoch(EpochInput(hotkeys=hks(3), validator_permits=(True, False, False)))
    assert (j.scores, j.weights, j.fallback_used) == ((0.0,) * 3, (0.0, 0.5, 0.5), True)
    assert all(d.rule is Rule.NO_CANDIDATE for d in j.decisions)
    assert len(j.decisions) == 10


def test_total_scores_sums_competitions() -> None:
    assert total_scores({D16: [1.0, 2.0], D48: [0.5, 0.0]}, 2) == (1.5, 2.0)
    with pytest.raises(ValueError, match="3 uids, not 2"):
        total_scores({D16: [1.0, 2.0, 3.0]}, 2)


# --------------------------------------------------------------------------- input checks


def test_two_results_for_one_hotkey_are_rejected() -> None:
    with pytest.raises(ValueError, match="'hk1' has two results"):
        EpochInput(hotkeys=hks(2), results={D16: [res("hk1", 1), res("hk1", 2)]})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hotkeys": ("a", "a")}, "appears twice"),
        ({"hotkeys": ("a",), "validator_permits": (True, False)}, "one flag per hotkey"),
        ({"hotkeys": ("a",), "results": {"denoising_16000hz": []}}, "unknown competition"),
        ({"hotkeys": ("a",), "fallback": (3,)}, "unknown or hold a validator permit"),
        ({"hotkeys": ("a",), "fallback": "all"}, "fallback"),
    ],
)
def test_epoch_input_checks(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpochInput(**kwargs)  # type: ignore[arg-type]


def test_epoch_input_copies_its_mappings() -> None:
    metrics = {PESQ: 1.0}
    results = {D16: [ModelResult("hk0", 1, metrics)]}
    epoch = EpochInput(hotkeys=hks(1), results=results)
    metrics[PESQ] = 9.0
    results[D16].append(res("hk0", 2))
    assert epoch.results[D16] == (res("hk0", 1, PESQ=1.0),)


# --------------------------------------------------------------------------- properties

AVERAGES = st.sampled_from([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0035, 2.0, 2.2, 15.0, math.nan])
BLOCKS = st.one_of(st.none(), st.integers(0, 60000))
N_MAX = 6


@st.composite
def epochs(draw: st.DrawFn) -> EpochInput:
    n = draw(st.integers(1, N_MAX))
    hotkeys = hks(n)
    pool = [*hotkeys, "stranger"]
    permits = tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    results: dict[str, list[ModelResult]] = {}
    baseline: dict[str, dict[Metric, float]] = {}
    previous: dict[str, dict[Metric, WinnerRecord]] = {}
    for comp in COMPETITIONS:
        who = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
        results[comp.name] = [
            ModelResult(
                hotkey,
                draw(BLOCKS),
                {m: draw(AVERAGES) for m in comp.metrics if draw(st.integers(0, 3)) > 0},
                model_hash=draw(st.sampled_from([None, None, "A", "B"])),
                namespace="ns",
                name=draw(st.sampled_from(["m", "n"])),
                revision=draw(st.sampled_from([None, "r"])),
                ckpt_hashes=frozenset(draw(st.lists(st.sampled_from("abcdef"), max_size=2))),
            )
            for hotkey in who
        ]
        baseline[comp.name] = {m: draw(AVERAGES) for m in comp.metrics if draw(st.booleans())}
        previous[comp.name] = {
            m: WinnerRecord(draw(st.sampled_from(pool)), draw(st.integers(0, 60000)), 1.0)
            for m in comp.metrics
            if draw(st.booleans())
        }
    return EpochInput(
        hotkeys=hotkeys,
        validator_permits=permits,
        baseline=baseline,
        previous_winners=previous,
        results=results,
    )


@settings(max_examples=150, deadline=None)
@given(epochs())
def test_property_shares_are_bounded_and_non_negative(epoch: EpochInput) -> None:
    j = judge_epoch(epoch)
    for d in j.decisions:
        budget = get_competition(d.competition).budget(d.metric)
        assert d.winner_share in (0.0, budget.winner_share)
        assert all(r.share >= 0.0 for r in d.remainder)
        paid = math.fsum(r.share for r in d.remainder)
        assert paid <= budget.remainder_pool * (1 + 1e-12)
        assert d.paid <= (budget.winner_share + budget.remainder_pool) * (1 + 1e-12)
        assert paid + d.remainder_unpaid == pytest.approx(budget.remainder_pool, rel=1e-12)
        if d.winner is not None:
            assert d.winner_uid is not None
            assert epoch.hotkeys[d.winner_uid] == d.winner.hotkey
            assert all(r.hotkey != d.winner.hotkey for r in d.remainder)
    assert all(s >= 0.0 for v in j.competition_scores.values() for s in v)
    assert math.fsum(j.scores) <= 100.0 * (1 + 1e-12)


@settings(max_examples=150, deadline=None)
@given(epochs())
def test_property_weights_sum_to_one_and_skip_validators(epoch: EpochInput) -> None:
    j = judge_epoch(epoch)
    if all(epoch.validator_permits):  # nobody can be paid: no weights at all, never all zero
        assert (j.weights, j.weights_rule) == ((), WeightsRule.NO_PAYABLE_UID)
        return
    assert all(w >= 0.0 for w in j.weights)
    assert all(w == 0.0 for w, p in zip(j.weights, epoch.validator_permits, strict=True) if p)
    assert math.fsum(j.weights) == pytest.approx(1.0, rel=1e-12)


def _shuffled(epoch: EpochInput, rng: random.Random) -> EpochInput:
    def shuffled_dict(d: Mapping[str, object]) -> dict[str, object]:
        items = list(d.items())
        rng.shuffle(items)
        return dict(items)

    results = {c: rng.sample(list(rs), len(rs)) for c, rs in epoch.results.items()}
    return EpochInput(
        hotkeys=epoch.hotkeys,
        validator_permits=epoch.validator_permits,
        baseline=shuffled_dict(epoch.baseline),  # type: ignore[arg-type]
        previous_winners=shuffled_dict(epoch.previous_winners),  # type: ignore[arg-type]
        results=shuffled_dict(results),  # type: ignore[arg-type]
    )


@settings(max_examples=150, deadline=None)
@given(epochs(), st.randoms(use_true_random=False))
def test_property_result_does_not_depend_on_input_order(
    epoch: EpochInput, rng: random.Random
) -> None:
    assert judge_epoch(_shuffled(epoch, rng)) == judge_epoch(epoch)


POSITIVE = st.floats(0.01, 100.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(POSITIVE, st.lists(POSITIVE, min_size=1, max_size=6))
def test_property_positive_remainder_matches_the_reference_ratio(
    w: float, averages: list[float]
) -> None:
    others = [Entrant(f"hk{i}", i, 0, a) for i, a in enumerate(averages)]
    shares, unpaid = remainder_shares(1.8, w, others)
    ratios = [a / w for a in averages]
    expected = [1.8 * r / math.fsum(ratios) for r in ratios]
    assert [r.share for r in shares] == pytest.approx(expected, rel=1e-9)
    assert [r.ratio for r in shares] == pytest.approx(ratios, rel=1e-9)
    assert unpaid == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-100.0, 100.0, allow_nan=False),
    st.lists(st.floats(-100.0, 100.0, allow_nan=False), max_size=6),
)
def test_property_remainder_stays_within_the_pool(w: float, averages: list[float]) -> None:
    others = [Entrant(f"hk{i}", i, 0, a) for i, a in enumerate(averages)]
    shares, unpaid = remainder_shares(2.0, w, others)
    assert all(r.share >= 0.0 for r in shares)
    assert unpaid >= 0.0
    assert math.fsum([unpaid, *(r.share for r in shares)]) == pytest.approx(2.0, rel=1e-12)


def test_public_names_resolve() -> None:
    import soundsright_async.validator.judging as judging

    assert len(set(judging.__all__)) == len(judging.__all__)
    assert all(hasattr(judging, name) for name in judging.__all__)
