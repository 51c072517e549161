"""Smoke run of ``benchmarks/soak.py`` (3 s per server), and the status report sharing.

The soak starts the miner's signed server and the validator's status server in their own
processes, as the daemons serve them, and keeps 8 keep-alive clients busy: every request of
every route must get its expected answer (signed requests with concurrent fresh nonces, 404 for
another competition, Feedback stored; ``/healthz`` ok, ``/status``, ``/metrics``, dashboard).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import dashboard_data as dd
import pytest

from soundsright_async.validator._status import SharedReport

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks/soak.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_short_soak_of_both_servers_answers_everything() -> None:
    result = _bench().run(seconds=3.0, concurrency=8)
    assert set(result["servers"]) == {"miner", "status"}
    for kind, r in result["servers"].items():
        assert r["exit_code"] == 0, kind
        for phase in ("idle_client", "steady"):
            assert r[phase]["errors"] == 0, (kind, phase, r[phase].get("error_kinds"))
            assert r[phase]["requests"] > 0, (kind, phase)
            assert 0 < r[phase]["p50_ms"] <= r[phase]["p99_ms"], (kind, phase)
        assert r["steady"]["requests_per_s"] > 20, kind
        assert all(route["requests"] > 0 for route in r["by_route"].values()), kind
        assert r["rss_start_mb"] > 10, kind
        assert r["server_cpu_ms_per_request"] > 0, kind
        assert r["growth_mb"] < 50, kind  # 3 s cannot hide a big leak


async def test_concurrent_status_requests_share_one_report(tmp_path: Path) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "full")
    try:
        report = SharedReport(state, store)
        docs = await asyncio.gather(*(report.get() for _ in range(8)))
        assert all(d is docs[0] for d in docs)  # one build for all eight
        assert docs[0]["epoch"]["number"] == dd.EPOCH
        later = await report.get()
        assert later is not docs[0]  # the next request builds a fresh one
        assert later["candidates"] == docs[0]["candidates"]
    finally:
        await store.aclose()


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_report(tmp_path: Path) -> None:
    store, state = await dd.build(tmp_path / "v.sqlite", "full")
    try:
        report = SharedReport(state, store)
        first = asyncio.ensure_future(report.get())
        second = asyncio.ensure_future(report.get())
        await asyncio.sleep(0)  # both wait on the same build
        first.cancel()
        doc = await second
        assert doc["epoch"]["number"] == dd.EPOCH
        assert first.cancelled()
    finally:
        await store.aclose()
