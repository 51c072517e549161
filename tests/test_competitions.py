from __future__ import annotations

import math

import pytest

from soundsright_async.competitions import (
    COMPETITIONS,
    METRICS,
    TOTAL_BUDGET,
    Metric,
    Task,
    competition_by_chain_id,
    get_competition,
)


def test_four_competitions_with_distinct_chain_ids() -> None:
    assert [(c.name, c.task, c.sample_rate, c.chain_id) for c in COMPETITIONS] == [
        ("DENOISING_16000HZ", Task.DENOISING, 16000, 1),
        ("DEREVERBERATION_16000HZ", Task.DEREVERBERATION, 16000, 2),
        ("DENOISING_48000HZ", Task.DENOISING, 48000, 3),
        ("DEREVERBERATION_48000HZ", Task.DEREVERBERATION, 48000, 4),
    ]
    for c in COMPETITIONS:
        assert competition_by_chain_id(c.chain_id) is c


def test_budget_table() -> None:
    table = {
        c.name: {b.metric.value: (b.winner_share, b.remainder_pool) for b in c.budgets}
        for c in COMPETITIONS
    }
    assert table == {
        "DENOISING_16000HZ": {"PESQ": (6.0, 1.8), "ESTOI": (4.0, 1.2)},
        "DEREVERBERATION_16000HZ": {"PESQ": (6.0, 1.2), "ESTOI": (4.0, 0.8)},
        "DENOISING_48000HZ": {
            "ESTOI": (18.0, 2.0),
            "SI_SDR": (9.0, 1.0),
            "SI_SIR": (9.0, 1.0),
            "SI_SAR": (9.0, 1.0),
        },
        "DEREVERBERATION_48000HZ": {"ESTOI": (12.0, 3.0), "SI_SDR": (8.0, 2.0)},
    }
    assert [c.total_budget for c in COMPETITIONS] == [13.0, 12.0, 50.0, 25.0]
    assert math.fsum(c.total_budget for c in COMPETITIONS) == TOTAL_BUDGET == 100.0


def test_metrics_and_noisy_requirement() -> None:
    assert get_competition("denoising_16000hz").metrics == (Metric.PESQ, Metric.ESTOI)
    assert not get_competition("DEREVERBERATION_16000HZ").needs_noisy
    assert get_competition("DENOISING_48000HZ").needs_noisy
    assert get_competition("DEREVERBERATION_48000HZ").metrics == (Metric.ESTOI, Metric.SI_SDR)
    assert {m: (s.floor, s.ceiling) for m, s in METRICS.items()} == {
        Metric.PESQ: (-0.5, 4.5),
        Metric.ESTOI: (-1.0, 1.0),
        Metric.SI_SDR: (-100.0, 100.0),
        Metric.SI_SIR: (-100.0, 100.0),
        Metric.SI_SAR: (-100.0, 100.0),
    }


def test_lookup_errors_name_the_choices() -> None:
    with pytest.raises(KeyError, match="expected one of DENOISING_16000HZ"):
        get_competition("DENOISING_8000HZ")
    with pytest.raises(KeyError, match="unknown competition id 0"):
        competition_by_chain_id(0)
    with pytest.raises(KeyError, match="has no metric PESQ"):
        get_competition("DENOISING_48000HZ").budget(Metric.PESQ)
