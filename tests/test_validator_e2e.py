"""The validator daemon end to end on loopback (acceptance of the validator issue).

One localnet with 1 s blocks, miner daemons (real processes) advertising the example models from a
local git hub, and two validators (real processes) on the same chain and epochs. Validator B is
killed with SIGKILL in the middle of a benchmark and restarted; validator A runs undisturbed. Both
must judge the epoch identically (same seed from the chain, same dataset, same results), set
weights that read back from the chain, and send every miner its Feedback. A fourth miner commits
after the epoch started: it is rejected for that epoch with that reason and benchmarked in the
next. Real Podman containers throughout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from containers.podman import engine_url

from soundsright_async.chain._values import normalize_weights
from soundsright_async.demo import Daemon, LocalNetwork, free_port
from soundsright_async.miner.feedback import read_records

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "models"
COMP = "DENOISING_16000HZ"
EPOCH_BLOCKS = 180

pytestmark = pytest.mark.slow


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def _rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return []  # not created yet
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def until(what: str, check: Callable[[], Any], limit_s: float, *procs: Daemon) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        for p in procs:
            if not p.running():
                raise AssertionError(
                    f"{p.config.name} exited while waiting for {what}:\n" + p.log_text()[-3000:]
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g}s waiting for {what}")
        await asyncio.sleep(0.5)


def _labelled(kind: str, owner: str) -> list[str]:
    env = dict(os.environ, CONTAINERS_CONF=f"/tmp/soundsright-podman-{os.getuid()}/containers.conf")
    cmd = ["podman", kind, "ls", "-q", "--filter", f"label=soundsright.owner={owner}"]
    if kind == "container":
        cmd.insert(3, "-a")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.fixture
def procs() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for p in started:
        p.stop(10)


@pytest.mark.timeout(1200)
async def test_two_validators_one_killed_judge_the_same_epoch(
    tmp_path: Path, procs: list[Daemon]
) -> None:
    docker_host = engine_url()
    env = {"DOCKER_HOST": docker_host}
    net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
    val_a = net.wallet("vala", stake=5000, validator=True)
    val_b = net.wallet("valb", stake=5000, validator=True)
    miners = [
        net.add_miner("m1", EXAMPLES / "passthrough", COMP),
        net.add_miner("m2", EXAMPLES / "spectral-gate", COMP),
        net.add_miner("m3", EXAMPLES / "dereverb", COMP),
    ]
    late = net.add_miner(
        "m4", EXAMPLES / "spectral-gate", COMP, extra={"NOTICE": b"a later entrant\n"}
    )
    for m in miners:
        procs.append(Daemon("miner", net.miner_config(m), tmp_path / f"{m.name}.log").start())
    await until(
        "three commitments",
        lambda: len(net.db.commitments(net.netuid)) == 3,
        90,
        *procs,
    )
    anchor = net.db.head().number + 15
    ports = {"a": free_port(), "b": free_port()}
    configs = {
        name: net.validator_config(
            f"val{name}",
            competitions=[COMP],
            epoch_blocks=EPOCH_BLOCKS,
            anchor_block=anchor,
            stop_margin_blocks=10,
            dataset_size=2,
            status_port=ports[name],
            owner=f"e2e-{name}-{os.getpid()}",
            bridge_prefix=f"sre{name}",
        )
        for name in ("a", "b")
    }
    a = Daemon("validator", configs["a"], tmp_path / "vala.log", env=env).start()
    b = Daemon("validator", configs["b"], tmp_path / "valb.log", env=env).start()
    procs += [a, b]
    store_a = net.root / "validators" / "vala" / "validator.sqlite"
    store_b = net.root / "validators" / "valb" / "validator.sqlite"

    # The fourth miner commits once epoch 0 has started.
    await until("epoch 0 to start", lambda: net.db.head().number >= anchor, 120, a, b)
    procs.append(Daemon("miner", net.miner_config(late), tmp_path / "m4.log").start())

    # Kill B in the middle of a benchmark, once at least one of its results is stored.
    def b_mid_benchmark() -> bool:
        done = _rows(store_b, "SELECT hotkey FROM results WHERE epoch = 0")
        running = _rows(
            store_b, "SELECT hotkey FROM candidates WHERE epoch = 0 AND state = 'running'"
        )
        return bool(done) and bool(running)

    await until("validator B mid-benchmark", b_mid_benchmark, 240, a, b)
    before = {
        r["hotkey"]: r["created_at"]
        for r in _rows(store_b, "SELECT hotkey, created_at FROM results WHERE epoch = 0")
    }
    interrupted = {
        r["hotkey"]
        for r in _rows(
            store_b, "SELECT hotkey FROM candidates WHERE epoch = 0 AND state = 'running'"
        )
    }
    seed_before = _rows(store_b, "SELECT seed FROM epochs WHERE number = 0")[0]["seed"]
    b.kill9()
    killed_at = time.time()
    b2 = Daemon("validator", configs["b"], tmp_path / "valb.log", env=env).start()
    procs.append(b2)
    await until("B to resume the epoch", lambda: "epoch.resumed" in b2.log_text(), 90, a, b2)
    status = _status(ports["b"])
    assert status is not None
    assert status["epoch"]["number"] == 0
    assert status["epoch"]["seed"] == seed_before

    def judged(store: Path, epoch: int) -> Any:
        return _rows(store, "SELECT input, output FROM judgements WHERE epoch = ?", epoch)

    limit = EPOCH_BLOCKS * net.block_time + 180
    await until(
        "both to judge epoch 0", lambda: judged(store_a, 0) and judged(store_b, 0), limit, a, b2
    )

    # Same seed after the restart, identical judgement to the undisturbed validator.
    assert _rows(store_b, "SELECT seed FROM epochs WHERE number = 0")[0]["seed"] == seed_before
    assert _rows(store_a, "SELECT seed FROM epochs WHERE number = 0")[0]["seed"] == seed_before
    (ja,), (jb,) = judged(store_a, 0), judged(store_b, 0)
    assert ja["input"] == jb["input"]
    assert ja["output"] == jb["output"]
    judge_in = json.loads(ja["input"])
    judge_out = json.loads(ja["output"])
    benchmarked = {r["hotkey"] for r in judge_in["results"][COMP]}
    assert benchmarked == {net.wallet(m.name) for m in miners}
    # A model must beat doing nothing: the passthrough (m1) is excluded and paid nothing.
    passthrough = net.db.metagraph(net.netuid).by_hotkey(net.wallet("m1"))
    assert passthrough is not None
    assert judge_out["weights"][passthrough.uid] == 0.0
    assert judge_in["unprocessed"][COMP]["PESQ"] > 1.0
    excluded = {(x["hotkey"], x["reason"]) for d in judge_out["decisions"] for x in d["excluded"]}
    assert (net.wallet("m1"), "no_improvement") in excluded

    # Finished results were not re-run; the interrupted model was.
    after = {
        r["hotkey"]: r["created_at"]
        for r in _rows(store_b, "SELECT hotkey, created_at FROM results WHERE epoch = 0")
    }
    for hotkey, created in before.items():
        assert after[hotkey] == created
    assert interrupted
    assert all(after[h] > killed_at for h in interrupted)

    # The replay command gives the stored output byte for byte.
    replay_in = tmp_path / "epoch0.json"
    replay_in.write_text(ja["input"])
    replay = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "soundsright_async.cli",
            "judge",
            "--input",
            str(replay_in),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == ja["output"]

    # Weights on chain: both validators set the judged weights (u16-normalised).
    expected = normalize_weights({u: w for u, w in enumerate(judge_out["weights"]) if w > 0})
    uid_a = net.db.metagraph(net.netuid).by_hotkey(val_a)
    uid_b = net.db.metagraph(net.netuid).by_hotkey(val_b)
    assert uid_a is not None
    assert uid_b is not None
    await until(
        "weights on chain",
        lambda: (
            net.db.weights(net.netuid).get(uid_a.uid) == expected
            and net.db.weights(net.netuid).get(uid_b.uid) == expected
        ),
        60,
        a,
        b2,
    )

    # Every miner got its result from both validators.
    def fed(m: Any) -> set[tuple[str, str]]:
        records, _, _ = read_records(m.data_dir(net.root))
        return {
            (r.validator, "result")
            for r in records
            if r.feedback.result is not None and r.feedback.epoch == 0 and not r.feedback.winners
        } | {
            (r.validator, "epoch") for r in records if r.feedback.epoch == 0 and r.feedback.winners
        }

    for m in miners:
        await until(
            f"feedback for {m.name}",
            lambda m=m: {(val_a, "result"), (val_b, "result")} <= fed(m),
            60,
        )

    # The late miner: rejected for epoch 0 with the reason, benchmarked in epoch 1.
    rejection = _rows(
        store_a, "SELECT reason FROM rejections WHERE epoch = 0 AND hotkey = ?", net.wallet("m4")
    )
    assert [r["reason"] for r in rejection] == ["committed_after_epoch_start"]
    b2.stop(30)
    await until(
        "the late miner's result in epoch 1",
        lambda: _rows(
            store_a, "SELECT passed FROM results WHERE epoch = 1 AND hotkey = ?", net.wallet("m4")
        ),
        EPOCH_BLOCKS * net.block_time + 180,
        a,
    )
    assert (
        _rows(
            store_a, "SELECT passed FROM results WHERE epoch = 1 AND hotkey = ?", net.wallet("m4")
        )[0]["passed"]
        == 1
    )

    # A clean stop: exit 0, nothing of either validator left in the engine.
    assert a.stop(60) == 0
    for owner in (f"e2e-a-{os.getpid()}", f"e2e-b-{os.getpid()}"):
        assert _labelled("container", owner) == []
        assert _labelled("network", owner) == []
