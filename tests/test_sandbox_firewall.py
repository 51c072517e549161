"""The host firewall rule pair with several holders (real iptables; needs root, CI runs as
root). The prefix ``srfw`` matches no interface on the machine, so the rules change nothing
but themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soundsright_async.sandbox.engine import BridgeFirewall, EngineError, rule_pair

PREFIX = "srfw"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables") is None,
    reason="the rule pair needs root and iptables (CI runs as root)",
)


def _present() -> list[bool]:
    """Whether the ACCEPT and the DROP rule are in INPUT (iptables -C)."""
    return [
        subprocess.run(["iptables", "-w", "-C", "INPUT", *spec], capture_output=True).returncode
        == 0
        for spec in rule_pair(PREFIX)
    ]


def _input_rules() -> list[str]:
    out = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if f"{PREFIX}+" in line]


async def test_first_holder_to_leave_keeps_the_rules_for_the_other(tmp_path: Path) -> None:
    a = BridgeFirewall(PREFIX, state_dir=tmp_path)
    b = BridgeFirewall(PREFIX, state_dir=tmp_path)
    try:
        await a.install()
        await b.install()
        assert _present() == [True, True]
        assert len(_input_rules()) == 2  # the second holder did not duplicate them
        assert a.holders() == 2
        await a.remove()
        assert _present() == [True, True]  # b still runs containers
        assert b.holders() == 1
        await b.remove()
        assert _present() == [False, False]
        assert _input_rules() == []
        assert list((tmp_path / f"{PREFIX}.holders").iterdir()) == []
    finally:
        await a.remove()
        await b.remove()


async def test_a_dead_holder_does_not_keep_the_rules(tmp_path: Path) -> None:
    """A process killed with SIGKILL leaves its holder file: it is pruned (its pid is gone or
    started at another time), so the last live holder still removes the rules."""
    holders = tmp_path / f"{PREFIX}.holders"
    holders.mkdir()
    (holders / "4194304-123-deadbeef").touch()  # above pid_max's default: never alive
    (holders / f"{os.getpid()}-1-cafebabe").touch()  # our pid, another start time: reused pid
    fw = BridgeFirewall(PREFIX, state_dir=tmp_path)
    try:
        await fw.install()
        assert fw.holders() == 1
        assert sorted(p.name for p in holders.iterdir()) == [fw._holder.name]  # type: ignore[union-attr]
        await fw.remove()
        assert _present() == [False, False]
    finally:
        await fw.remove()


async def test_remove_without_install_is_a_no_op(tmp_path: Path) -> None:
    other = BridgeFirewall(PREFIX, state_dir=tmp_path)
    fw = BridgeFirewall(PREFIX, state_dir=tmp_path)
    try:
        await other.install()
        await fw.remove()  # never installed: must not take the rules from `other`
        assert _present() == [True, True]
    finally:
        await other.remove()
    assert _present() == [False, False]


def test_non_root_is_refused_with_a_clear_message() -> None:
    """As another user the install fails with one line that says what to do."""
    code = (
        "import asyncio, tempfile, pathlib\n"
        "from soundsright_async.sandbox.engine import BridgeFirewall, EngineError\n"
        "fw = BridgeFirewall('srfw', state_dir=pathlib.Path(tempfile.mkdtemp()))\n"
        "try:\n    asyncio.run(fw.install())\n"
        "except EngineError as exc:\n    print(exc)\n"
    )
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop to another user")
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
        timeout=60,
    )
    assert out.stdout.startswith("the host firewall (iptables) needs root"), out
    assert 'sandbox.firewall = "off"' in out.stdout
    assert EngineError.__name__ not in out.stderr
