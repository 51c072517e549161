"""Acceptance (issue 15): the miner, held to 1024 open files, under 1100 trickling connections.

Runs ``benchmarks/http_flood.py``'s scenario: a real miner process (RLIMIT_NOFILE 1024 set in
``preexec_fn``), a flooding process on 127.0.0.1 that trickles header lines on 1100 connections
and reopens every one the server closes, a permitted validator on 127.0.0.2 sending a signed
request (new connection) every second, ``/healthz`` probes, and one signed request trickling its
body a byte every 2 s.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_flood", ROOT / "benchmarks/http_flood.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_flood_of_trickling_connections_does_not_starve_validators(tmp_path: Path) -> None:
    r = _bench().run(tmp_path, connections=1100, seconds=24.0, nofile=1024, trickle_s=1.0)
    assert r["exit_code"] == 0
    assert r["flood"]["closed_by_server"] > 1100  # the flood was cut, and came back
    assert r["signed_failed"] == 0
    assert r["signed_ok"] >= 5
    assert r["signed_max_s"] < 3.0
    assert r["health_failed"] == 0
    assert r["trickled_body_cut_after_s"] is not None
    assert 19.0 <= r["trickled_body_cut_after_s"] <= 30.0  # body_timeout_s = 20
    assert r["log_growth_bytes"] < 5 * 1024 * 1024
    assert r["rss_end_mb"] - r["rss_start_mb"] < 20.0
