"""docs/miner.md's localnet walk-through, run as written (issue 15).

The shell block after ``<!-- walkthrough: localnet -->`` is extracted and run by bash against a
temporary directory: only ``DEMO`` and the two ports (6001 and 6000, to free ones) are changed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- walkthrough: localnet -->\n```sh\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def walkthrough() -> str:
    doc = (ROOT / "docs/miner.md").read_text()
    start = doc.index(MARK) + len(MARK)
    return doc[start : doc.index("\n```\n", start) + 1]


def test_the_walkthrough_block_is_complete() -> None:
    script = walkthrough()
    assert script.startswith("export DEMO=/tmp/soundsright-demo\n")
    assert "--validator --stake 1000\n" in script
    assert script.endswith('kill "$MINER_PID"\n')


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_localnet_walkthrough_runs_as_written(tmp_path: Path) -> None:
    http, health = _free_port(), _free_port()
    script = walkthrough()
    script = script.replace("export DEMO=/tmp/soundsright-demo", f"export DEMO={tmp_path}/demo")
    script = re.sub(r"\b6001\b", str(http), script)
    script = re.sub(r"\b6000\b", str(health), script)
    script = 'trap \'[ -n "${MINER_PID:-}" ] && kill "$MINER_PID" 2>/dev/null\' EXIT\n' + script
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        ["timeout", "120", "bash", "-e", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "soundsright-miner: ok: subnet 1 on localnet: 2 neurons\n" in out
    assert f"soundsright-miner: ok: endpoint 127.0.0.1:{http} is reachable\n" in out
    assert '"status": "ok"' in out
    assert f"127.0.0.1:{http}" in out.split(" neurons\n", 2)[2]  # the endpoint on the dev chain
    assert out.endswith(
        "competition='DENOISING_16000HZ' hf_model_namespace='my-hf-user' "
        "hf_model_name='my-enhancer' hf_model_revision='6bab4cf9116d72c1bc4f8e857e7cd5c40795a882'"
        "\n"
    )
