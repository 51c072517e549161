"""The systemd units: hardening lines present, open-file limit sized to the connection caps,
and ``systemd-analyze security`` exposure (when the analyzer is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from soundsright_async.config import MinerHealthSettings, MinerServerSettings

UNITS = Path(__file__).resolve().parent.parent / "systemd"
HARDENING = {
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RemoveIPC": "yes",
}


def _service(name: str) -> dict[str, str]:
    out = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


@pytest.mark.parametrize("unit", ["soundsright-miner.service", "soundsright-validator.service"])
def test_units_carry_the_hardening_lines(unit: str) -> None:
    svc = _service(unit)
    assert {k: svc.get(k) for k in HARDENING} == HARDENING


def test_miner_open_file_limit_fits_both_servers_and_headroom() -> None:
    need = MinerServerSettings().max_connections + MinerHealthSettings().max_connections + 192
    assert need == 992
    assert int(_service("soundsright-miner.service")["LimitNOFILE"]) >= need


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize(
    ("unit", "at_most"),
    [("soundsright-miner.service", 1.7), ("soundsright-validator.service", 5.9)],
)
def test_security_exposure(unit: str, at_most: float, tmp_path: Path) -> None:
    copy = tmp_path / unit  # the analyzer wants the unit's own name
    copy.write_text((UNITS / unit).read_text())
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert m is not None, out[-500:]
    assert float(m.group(1)) <= at_most
