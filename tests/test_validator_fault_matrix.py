"""The validator's fault matrix (issue 13 item 3): whatever fails, nothing finished is lost and
the epoch completes.

* ``kill -9`` in discovery, fetch, build, run, scoring, with a result just stored, at the epoch
  end (judging) and while weight setting retries: one validator process killed once per phase in
  sequence through one epoch, restarted each time; after each restart the same epoch and seed, the
  results stored before the kill unchanged, the interrupted model run again, the killed run's
  container swept; at the end the epoch judged once, weights on chain, nothing left in the engine.
* the Podman service (the test's own) killed (``kill -9``) while a model's container runs, and
  restarted: the run past the engine finishes and is kept, the model that needed the engine runs
  again once it is back (never a failure blamed on the model: ``engine_error`` is the engine's),
  the epoch is judged with every result and the weights set, the daemon never exits.
* the data dir's disk full during dataset generation, a result write and the judgement's write: a
  clear error in the log, the daemon keeps running and resumes when space returns.
* the chain unreachable through an epoch boundary: the ended epoch is judged once, the next one
  starts, weights are set when the chain is back.

Real processes, real Podman containers, one localnet with 1 s blocks, in-process fake miners.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containers.podman import engine_url, kill_own_service, own_service
from validator_support import (
    COMP,
    EXAMPLES,
    events,
    fake_miners,
    get_json,
    labelled,
    rows,
    uid_of,
    until,
    validator,
)

from soundsright_async.chain._values import normalize_weights
from soundsright_async.demo import Daemon, LocalNetwork, free_port
from soundsright_async.validator._epochs import seed_from_hash

pytestmark = pytest.mark.slow


@pytest.fixture
def procs() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for p in started:
        p.stop(20)


def _results(store: Path, epoch: int) -> dict[str, float]:
    return {
        r["hotkey"]: r["created_at"]
        for r in rows(store, "SELECT hotkey, created_at FROM results WHERE epoch = ?", epoch)
    }


def _blob(seed: int) -> bytes:
    """A few MiB of reproducible bytes: widens the fetch window a kill has to hit."""
    import random

    return random.Random(seed).randbytes(6 * 1024 * 1024)


@pytest.mark.timeout(1200)
async def test_kill9_in_every_phase_loses_nothing(tmp_path: Path, procs: list[Daemon]) -> None:
    docker_host = engine_url()
    net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
    val = net.wallet("val", stake=5000, validator=True)
    owner = f"fm-kill-{os.getpid()}"
    status_port = free_port()
    models = {
        "m1": (EXAMPLES / "spectral-gate", {"blob.bin": _blob(1)}),
        "m2": (EXAMPLES / "spectral-gate", {"blob.bin": _blob(2)}),
    }
    async with fake_miners(net, models) as hotkeys:
        anchor = net.db.head().number + 25
        config = net.validator_config(
            "val",
            competitions=[COMP],
            epoch_blocks=270,
            anchor_block=anchor,
            stop_margin_blocks=10,
            dataset_size=2,
            status_port=status_port,
            owner=owner,
            bridge_prefix="srfk",
        )
        store = net.root / "validators" / "val" / "validator.sqlite"
        incarnation = [0]

        def start() -> tuple[Daemon, Path]:
            log = tmp_path / f"val-{incarnation[0]}.log"
            incarnation[0] += 1
            d = validator(config, log, docker_host).start()
            procs.append(d)
            return d, log

        def seed0() -> int | None:
            got = rows(store, "SELECT seed FROM epochs WHERE number = 0")
            return None if not got else int(got[0]["seed"])

        kept: dict[str, float] = {}

        async def restart(phase: str, killed: Daemon) -> tuple[Daemon, Path]:
            """After a kill -9: same epoch, same seed, nothing stored lost or re-run."""
            before = _results(store, 0)
            kept.update(before)
            seed = seed0()
            killed.kill9()
            d, log = start()
            resumed = await until(
                f"epoch 0 resumed after the kill in {phase}",
                lambda: events(log, "epoch.resumed"),
                120,
                d,
            )
            assert resumed[0]["epoch"] == 0
            assert resumed[0]["seed"] == seed
            assert seed0() == seed
            after = _results(store, 0)
            assert {h: after[h] for h in before} == before, phase
            return d, log

        # 1. discovery: killed the moment epoch 0 starts (discovery and datasets begin).
        v, log = start()
        await until("epoch 0 to start", lambda: events(log, "epoch.started"), 180, v, poll_s=0.1)
        assert _results(store, 0) == {}
        v, log = await restart("discovery", v)

        # 2. fetch: a candidate's step is "fetch" in /status.
        def step(name: str) -> bool:
            _, doc = get_json(status_port, "/status")
            return any(c.get("step") == name for c in doc.get("candidates", []))

        await until("a model being fetched", lambda: step("fetch"), 180, v, poll_s=0.1)
        assert _results(store, 0) == {}
        v, log = await restart("fetch", v)

        # 3. build: the runner started (benchmark.started) and no container runs yet.
        await until(
            "a build",
            lambda: (
                events(log, "benchmark.started") and not events(log, "sandbox.container.started")
            ),
            240,
            v,
            poll_s=0.2,
        )
        v, log = await restart("build", v)

        # 4. run: the first model's container is up (run slots: 1, so the other one waits).
        await until(
            "a model's container",
            lambda: events(log, "sandbox.container.started"),
            300,
            v,
            poll_s=0.2,
        )
        running = labelled("container", owner, running=True)
        assert len(running) == 1
        v, log = await restart("run", v)
        assert set(labelled("container", owner)).isdisjoint(running)  # the start-up sweep

        # 5. scoring: the second container starts once the first model left its slot; the first
        # is being scored then (scoring happens after the slot is released).
        await until(
            "the second model's container",
            lambda: len(events(log, "sandbox.container.started")) == 2,
            300,
            v,
            poll_s=0.2,
        )
        assert events(log, "benchmark.finished") == []
        assert _results(store, 0) == {}
        v, log = await restart("scoring", v)

        # 6. a result stored, the other model still in flight: the result is kept, the other
        # model run again.
        (stored, *_) = await until(
            "the first result", lambda: events(log, "result.stored"), 300, v, poll_s=0.1
        )
        killed_at = time.time()
        v, log = await restart("run with a result stored", v)
        first = stored["hotkey"]
        assert set(kept) == {first}
        interrupted = next(h for h in hotkeys.values() if h != first)
        await until("the interrupted model's result", lambda: len(_results(store, 0)) == 2, 300, v)
        final = _results(store, 0)
        assert final[first] == kept[first]
        assert final[interrupted] > killed_at
        passed = rows(store, "SELECT hotkey, passed FROM results WHERE epoch = 0")
        assert {r["hotkey"]: r["passed"] for r in passed} == {h: 1 for h in hotkeys.values()}

        # 7. judging: killed just before epoch 0 ends (judging follows the end within
        # milliseconds, too fast to hit from outside) and started after it: the restart judges
        # it. (The chain refuses this validator's weights for now: it lost its permit, so weight
        # setting keeps retrying.)
        end = anchor + 270
        await until("the end of epoch 0", lambda: net.db.head().number >= end - 2, 300, v)
        v.kill9()
        assert rows(store, "SELECT epoch FROM judgements") == []
        net.wallet("val", stake=5000, validator=False)
        await until("epoch 1", lambda: net.db.head().number >= end + 1, 60)
        v, log = start()
        judged = await until(
            "epoch 0 judged after the restart",
            lambda: rows(store, "SELECT input, output FROM judgements WHERE epoch = 0"),
            240,
            v,
        )
        assert len(events(log, "epoch.judged")) == 1

        # 8. weight setting: killed while it retries a refused write; the permit comes back.
        refused = await until(
            "a refused weight write",
            lambda: rows(store, "SELECT status, reason FROM weight_attempts WHERE epoch = 0"),
            120,
            v,
        )
        assert "NeuronNoValidatorPermit" in refused[0]["reason"]
        v.kill9()
        net.wallet("val", stake=5000, validator=True)
        v, log = start()
        out = json.loads(judged[0]["output"])
        judge_in = json.loads(judged[0]["input"])
        assert {r["hotkey"] for r in judge_in["results"][COMP]} == set(hotkeys.values())
        expected = normalize_weights({u: w for u, w in enumerate(out["weights"]) if w > 0})
        assert expected
        assert set(expected) <= {uid_of(net, h) for h in hotkeys.values()}
        val_uid = uid_of(net, val)
        await until(
            "the judged weights on chain",
            lambda: net.db.weights(net.netuid).get(val_uid) == expected,
            180,
            v,
        )
        ok = rows(store, "SELECT epoch FROM weight_attempts WHERE status = 'ok'")
        assert {r["epoch"] for r in ok} == {0}
        # Judged once, with the results of before every kill.
        assert len(rows(store, "SELECT epoch FROM judgements WHERE epoch = 0")) == 1
        assert _results(store, 0) == final
        assert [r["status"] for r in rows(store, "SELECT status FROM epochs WHERE number = 0")] == [
            "judged"
        ]
        assert v.stop(60) == 0
    assert labelled("container", owner) == []
    assert labelled("network", owner) == []


# -- the Podman service killed and restarted mid-run -------------------------------------------


def _slow_enhance(seconds: int) -> bytes:
    """The example's server with ``seconds`` of sleep in ``/enhance/``: a model's container
    runs that long at least (a run otherwise takes about a second), the window the test kills
    the engine in, whatever the build times."""
    text = (EXAMPLES / "spectral-gate" / "app" / "server.py").read_text()
    hook = '@app.post("/enhance/")\ndef run_enhance():\n'
    assert hook in text
    return text.replace(hook, f"{hook}    __import__('time').sleep({seconds})\n").encode()


def _remove_images(owner: str) -> None:
    """The image of a run whose removal failed on the dead engine stays until the next start-up
    sweep (the closing sweep leaves images): removed here, not left in the shared storage."""
    env = dict(os.environ, CONTAINERS_CONF=f"/tmp/soundsright-podman-{os.getuid()}/containers.conf")
    ids = labelled("image", owner)
    if ids:
        subprocess.run(["podman", "rmi", "-f", *ids], capture_output=True, env=env, timeout=120)


@pytest.mark.timeout(1500)
async def test_podman_service_killed_mid_run(tmp_path: Path, procs: list[Daemon]) -> None:
    """Two models, one run slot, the validator on a Podman service of the test's own. The
    service is killed (``kill -9``) while the first model's container runs, and started again
    once the failure shows. The run in flight talks to its container directly: it finishes and
    is kept. The other model (building, or waiting for the run slot) fails on the dead engine:
    the runner takes the engine out of use (``benchmark.engine_failed``) and, with no other
    engine, raises to the scheduler (``benchmark.engine_unavailable``): never stored as the
    model's failure, run again once the engine answers. The epoch is judged with both results,
    the weights are set, nothing of this owner is left."""
    engine_url()  # Podman and the base image are there
    podman_dir = Path(f"/tmp/sr-podman-faults-{os.getpid()}")
    host = own_service(podman_dir)
    owner = f"fm-podman-{os.getpid()}"
    try:
        net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
        val = net.wallet("val", stake=5000, validator=True)
        status_port = free_port()
        slow = {"app/server.py": _slow_enhance(8)}
        models = {
            "m1": (EXAMPLES / "spectral-gate", slow),
            "m2": (EXAMPLES / "spectral-gate", slow | {"NOTICE": b"another entrant\n"}),
        }
        async with fake_miners(net, models) as hotkeys:
            # Sized for slow sandboxed builds on a loaded machine: two builds, a run, the
            # outage, a rebuild and a run fit in 300 blocks (1 s each) with room to spare.
            epoch_blocks = 300
            anchor = net.db.head().number + 15
            config = net.validator_config(
                "val",
                competitions=[COMP],
                epoch_blocks=epoch_blocks,
                anchor_block=anchor,
                stop_margin_blocks=10,
                dataset_size=2,
                status_port=status_port,
                owner=owner,
                bridge_prefix="srfp",
            )
            store = net.root / "validators" / "val" / "validator.sqlite"
            log = tmp_path / "val.log"
            v = validator(config, log, host).start()
            procs.append(v)

            # 1. A model's container runs (the only one: one run slot): the engine is killed.
            await until(
                "a model's container",
                lambda: events(log, "sandbox.container.started"),
                600,
                v,
                poll_s=0.1,
            )
            kill_own_service(podman_dir)
            killed_at = time.time()
            assert len(events(log, "sandbox.container.started")) == 1
            assert _results(store, 0) == {}

            # 2. The engine is dead. The run in flight finishes on its container and is kept.
            (first,) = await until(
                "the result of the run in flight",
                lambda: rows(store, "SELECT * FROM results WHERE epoch = 0"),
                180,
                v,
            )
            assert (first["passed"], first["reason"]) == (1, None)
            assert first["created_at"] > killed_at
            other = next(h for h in hotkeys.values() if h != first["hotkey"])
            # The other model's build or start fails on the engine: not stored, run again (and
            # failing again while the engine is away).
            failures = await until(
                "the engine failure retried",
                lambda: (
                    fails
                    if len(fails := events(log, "benchmark.engine_unavailable")) >= 2
                    else None
                ),
                180,
                v,
            )
            assert {f["hotkey"] for f in failures} == {other}
            assert all("engine local" in f["error"] for f in failures), failures
            # The runner took the engine out of use on the failed call (no other engine to
            # move the model to: the scheduler runs it again); no benchmark finished failed.
            (failed,) = events(log, "benchmark.engine_failed")
            assert failed["engine"] == "local"
            assert failed["model"].startswith(next(n for n, h in hotkeys.items() if h == other))
            assert [e["engine"] for e in events(log, "sandbox.engine.out_of_use")] == ["local"]
            assert [e for e in events(log, "benchmark.finished") if not e["passed"]] == []
            assert rows(store, "SELECT hotkey FROM results WHERE hotkey = ?", other) == []
            _, health = get_json(status_port, "/healthz")
            assert health["tasks"]["engines"]["state"] == "retrying"
            _, status = get_json(status_port, "/status")
            assert [(e["name"], e["up"]) for e in status["engines"]] == [("local", False)]
            assert v.running()

            # 3. The engine is back: the other model is run again and its result stored.
            back_at = time.time()
            assert own_service(podman_dir) == host
            (again,) = await until(
                "the re-run's result",
                lambda: rows(store, "SELECT * FROM results WHERE hotkey = ?", other),
                600,
                v,
            )
            assert (again["passed"], again["reason"]) == (1, None)
            assert again["created_at"] > back_at
            assert [e["hotkey"] for e in events(log, "benchmark.engine_back")] == [other]
            assert [e["engine"] for e in events(log, "sandbox.engine.back")] == ["local"]
            _, health = get_json(status_port, "/healthz")
            assert health["tasks"]["engines"]["state"] == "running"
            _, status = get_json(status_port, "/status")
            assert [(e["name"], e["up"]) for e in status["engines"]] == [("local", True)]
            # Nothing finished lost, no failure blamed on a model, nothing given up on.
            final = rows(store, "SELECT hotkey, passed, reason, created_at FROM results")
            assert {r["hotkey"]: (r["passed"], r["reason"]) for r in final} == {
                h: (1, None) for h in hotkeys.values()
            }
            assert _results(store, 0)[first["hotkey"]] == first["created_at"]
            assert events(log, "benchmark.not_rerun") == []

            # 4. The epoch ends: judged with both results, the weights set.
            end = anchor + epoch_blocks
            judged = await until(
                "epoch 0 judged",
                lambda: rows(store, "SELECT input, output FROM judgements WHERE epoch = 0"),
                max(0, end - net.db.head().number) + 300,
                v,
            )
            judge_in = json.loads(judged[0]["input"])
            assert {r["hotkey"] for r in judge_in["results"][COMP]} == set(hotkeys.values())
            out = json.loads(judged[0]["output"])
            expected = normalize_weights({u: w for u, w in enumerate(out["weights"]) if w > 0})
            assert expected
            assert set(expected) <= {uid_of(net, h) for h in hotkeys.values()}
            val_uid = uid_of(net, val)
            await until(
                "the judged weights on chain",
                lambda: net.db.weights(net.netuid).get(val_uid) == expected,
                180,
                v,
            )
            assert len(events(log, "epoch.judged")) == 1
            assert _results(store, 0) == {r["hotkey"]: r["created_at"] for r in final}
            # The run in flight's container and network outlived its teardown on the dead
            # engine; the engine's closing sweep removes them.
            assert v.stop(60) == 0
        assert labelled("container", owner) == []
        assert labelled("network", owner) == []
    finally:
        own_service(podman_dir, "--stop")
        shutil.rmtree(podman_dir, ignore_errors=True)
        _remove_images(owner)


# -- the data dir's disk full ------------------------------------------------------------------


def _mount_tmpfs(directory: Path, size: str) -> None:
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mount.stderr.strip()}")


def _umount(directory: Path) -> None:
    subprocess.run(["umount", str(directory)], capture_output=True, timeout=60, check=True)


def _fill(directory: Path, leave: int) -> Path:
    """Write a filler file until the filesystem is full, then give back ``leave`` bytes."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    with filler.open("r+b") as fh:
        fh.truncate(max(0, size - leave))
    return filler


@pytest.mark.timeout(900)
async def test_disk_full_during_datasets_and_a_result_write(
    tmp_path: Path, procs: list[Daemon]
) -> None:
    docker_host = engine_url()
    net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
    net.wallet("val", stake=5000, validator=True)
    owner = f"fm-disk-{os.getpid()}"
    status_port = free_port()
    data = net.root / "validators" / "val"
    data.mkdir(parents=True)
    _mount_tmpfs(data, "48m")
    try:
        # The enhanced outputs go to another filesystem: this test fills the state's disk, and a
        # full disk during the download is a different fault (it fails the model's download).
        (tmp_path / "work").mkdir()
        (data / "work").symlink_to(tmp_path / "work")
        async with fake_miners(net, {"m1": (EXAMPLES / "spectral-gate", None)}) as hotkeys:
            anchor = net.db.head().number + 35
            config = net.validator_config(
                "val",
                competitions=[COMP],
                epoch_blocks=150,
                anchor_block=anchor,
                stop_margin_blocks=10,
                dataset_size=2,
                status_port=status_port,
                owner=owner,
                bridge_prefix="srfd",
            )
            store = data / "validator.sqlite"
            log = tmp_path / "val.log"
            v = validator(config, log, docker_host).start()
            procs.append(v)
            await until("the validator ready", lambda: events(log, "validator.ready"), 180, v)
            assert not events(log, "epoch.started")
            filler = _fill(data, leave=96 * 1024)

            # 1. The epoch starts on a full disk: its datasets cannot be written.
            def dataset_failure() -> list[dict[str, object]]:
                return [
                    e
                    for e in events(log, "datasets.failed_will_retry")
                    if "No space left" in str(e.get("error"))
                ]

            await until("the dataset failure in the log", dataset_failure, 240, v)
            _, health = get_json(status_port, "/healthz")
            assert health["tasks"]["datasets"]["state"] == "retrying"
            assert "No space left" in health["tasks"]["datasets"]["last_error"]
            assert not events(log, "dataset.ready")
            filler.unlink()
            await until(
                "the datasets once space is back",
                lambda: rows(store, "SELECT number FROM epochs WHERE status = 'ready'"),
                240,
                v,
            )

            # 2. The disk fills up while the model runs: its result cannot be written.
            await until(
                "the model's container",
                lambda: events(log, "sandbox.container.started"),
                300,
                v,
                poll_s=0.2,
            )
            filler = _fill(data, leave=0)
            (failed, *_) = await until(
                "the result write failure in the log",
                lambda: events(log, "result.store_failed"),
                300,
                v,
            )
            assert failed["hotkey"] == hotkeys["m1"]
            assert "database or disk is full" in str(failed["error"])
            assert v.running()
            filler.unlink()
            got = await until(
                "the result once space is back",
                lambda: rows(store, "SELECT hotkey, passed FROM results WHERE epoch = 0"),
                120,
                v,
            )
            assert [(r["hotkey"], r["passed"]) for r in got] == [(hotkeys["m1"], 1)]
            (stored,) = events(log, "result.stored")
            assert stored["timestamp"] > failed["timestamp"]  # written by the retry
            assert len(events(log, "benchmark.finished")) == 1  # stored, not run again

            # 3. The disk is full at the epoch end: the judgement cannot be written.
            end = anchor + 150
            await until("3 blocks before the end", lambda: net.db.head().number >= end - 3, 300, v)
            filler = _fill(data, leave=0)
            (failed, *_) = await until(
                "the judgement's write failure in the log",
                lambda: events(log, "judging.failed_will_retry"),
                120,
                v,
            )
            assert failed["epoch"] == 0
            assert "full" in str(failed["error"])
            assert rows(store, "SELECT epoch FROM judgements") == []
            filler.unlink()
            judged = await until(
                "epoch 0 judged once space is back",
                lambda: rows(store, "SELECT input FROM judgements WHERE epoch = 0"),
                120,
                v,
            )
            judge_in = json.loads(judged[0]["input"])
            assert [r["hotkey"] for r in judge_in["results"][COMP]] == [hotkeys["m1"]]
            await until(
                "epoch 1 ready",
                lambda: rows(
                    store, "SELECT number FROM epochs WHERE number = 1 AND status = 'ready'"
                ),
                240,
                v,
            )
            assert v.stop(60) == 0
    finally:
        for p in procs:
            p.stop(20)
        _umount(data)
    assert labelled("container", owner) == []


# -- the chain unreachable through an epoch boundary -------------------------------------------


@pytest.mark.timeout(900)
async def test_chain_away_through_the_epoch_boundary(tmp_path: Path, procs: list[Daemon]) -> None:
    docker_host = engine_url()
    net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
    val = net.wallet("val", stake=5000, validator=True)
    owner = f"fm-chain-{os.getpid()}"
    status_port = free_port()
    epoch_blocks = 100
    async with fake_miners(net, {"m1": (EXAMPLES / "spectral-gate", None)}) as hotkeys:
        anchor = net.db.head().number + 15
        config = net.validator_config(
            "val",
            competitions=[COMP],
            epoch_blocks=epoch_blocks,
            anchor_block=anchor,
            stop_margin_blocks=10,
            dataset_size=2,
            status_port=status_port,
            owner=owner,
            bridge_prefix="srfc",
        )
        store = net.root / "validators" / "val" / "validator.sqlite"
        log = tmp_path / "val.log"
        v = validator(config, log, docker_host).start()
        procs.append(v)
        end = anchor + epoch_blocks
        await until(
            "the model's result in epoch 0",
            lambda: rows(store, "SELECT passed FROM results WHERE epoch = 0"),
            300,
            v,
        )
        await until("8 blocks before the end", lambda: net.db.head().number >= end - 8, 300, v)
        hidden = net.db.path.with_suffix(".hidden")
        os.rename(net.db.path, hidden)
        try:
            await until(
                "8 blocks into epoch 1, the metagraph task stale",
                lambda: (
                    net.db.head().number >= end + 8
                    and "metagraph" in get_json(status_port, "/healthz")[1].get("stale_tasks", [])
                ),
                120,
                v,
            )
            code, health = get_json(status_port, "/healthz")
            assert code == 503
            assert "metagraph" in health["stale_tasks"]
            assert not rows(store, "SELECT status FROM weight_attempts WHERE status = 'ok'")
        finally:
            os.rename(hidden, net.db.path)
        back = net.db.head().number
        judged = await until(
            "epoch 0 judged",
            lambda: rows(store, "SELECT input, output FROM judgements WHERE epoch = 0"),
            180,
            v,
        )
        judge_in = json.loads(judged[0]["input"])
        assert [r["hotkey"] for r in judge_in["results"][COMP]] == [hotkeys["m1"]]
        out = json.loads(judged[0]["output"])
        expected = normalize_weights({u: w for u, w in enumerate(out["weights"]) if w > 0})
        assert expected == {uid_of(net, hotkeys["m1"]): 65535}
        val_uid = uid_of(net, val)
        await until(
            "the judged weights on chain",
            lambda: net.db.weights(net.netuid).get(val_uid) == expected,
            120,
            v,
        )
        ok = rows(store, "SELECT epoch, block FROM weight_attempts WHERE status = 'ok'")
        assert [r["epoch"] for r in ok] == [0]
        assert ok[0]["block"] >= back
        # The next epoch started with the seed of its start block, and is being worked on.
        one = await until(
            "epoch 1 ready",
            lambda: rows(
                store, "SELECT seed, status FROM epochs WHERE number = 1 AND status = 'ready'"
            ),
            240,
            v,
        )
        assert one[0]["seed"] == seed_from_hash(net.db.block_hash(end))
        assert len([e for e in events(log, "epoch.judged") if e["epoch"] == 0]) == 1
        assert [r["status"] for r in rows(store, "SELECT status FROM epochs ORDER BY number")] == [
            "judged",
            "ready",
        ]
        assert v.stop(60) == 0
    assert labelled("container", owner) == []
    assert labelled("network", owner) == []


# -- SIGTERM while a model runs ----------------------------------------------------------------


@pytest.mark.timeout(600)
async def test_sigterm_mid_run_leaves_nothing(tmp_path: Path, procs: list[Daemon]) -> None:
    """A clean stop cancels the run in flight; its teardown finishes before the engine closes
    (it used to run on past the close: "Connector is closed", the network left behind)."""
    docker_host = engine_url()
    net = LocalNetwork(tmp_path / "net", block_time=1.0, weights_rate_limit=3)
    net.wallet("val", stake=5000, validator=True)
    owner = f"fm-term-{os.getpid()}"
    async with fake_miners(net, {"m1": (EXAMPLES / "spectral-gate", None)}):
        config = net.validator_config(
            "val",
            competitions=[COMP],
            epoch_blocks=150,
            anchor_block=net.db.head().number + 15,
            stop_margin_blocks=10,
            dataset_size=2,
            status_port=free_port(),
            owner=owner,
            bridge_prefix="srft",
        )
        log = tmp_path / "val.log"
        v = validator(config, log, docker_host).start()
        procs.append(v)
        await until(
            "the model's container",
            lambda: events(log, "sandbox.container.started"),
            300,
            v,
            poll_s=0.1,
        )
        assert v.stop(60) == 0
    assert events(log, "result.stored") == []  # it was stopped mid-run
    assert [e for e in events(log) if "remove_failed" in str(e.get("event"))] == []
    assert labelled("container", owner) == []
    assert labelled("network", owner) == []


# -- the engine's socket gone: the engine's fault, never the model's ---------------------------


async def test_a_gone_engine_socket_is_an_engine_error_not_the_models(tmp_path: Path) -> None:
    """Podman's service dead: a build or a start raises ``EngineError`` (the scheduler runs the
    model again later), never ``BuildFailed`` / ``StartFailed`` (stored as the model's failure);
    removals only log."""
    import aiodocker

    from soundsright_async.sandbox.engine import (
        BuildFailed,
        BuildRequest,
        DockerEngine,
        EngineError,
        RunningModel,
        RunRequest,
        StartFailed,
    )

    url = f"unix://{tmp_path / 'gone.sock'}"
    engine = DockerEngine(url=url, owner="fm-gone")
    engine._docker = aiodocker.Docker(url=url)  # opened, then the service died
    try:
        (tmp_path / "ctx").mkdir()
        (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
        with pytest.raises(EngineError) as built:
            await engine.build(BuildRequest(tmp_path / "ctx", "fm-gone:1", {}, 30.0))
        assert not isinstance(built.value, BuildFailed)
        assert str(built.value).startswith("engine default: builder create: Cannot connect")
        with pytest.raises(EngineError) as started:
            await engine.start(RunRequest("fm-gone:1", {}))
        assert not isinstance(started.value, StartFailed)
        assert str(started.value).startswith("engine default: network create: Cannot connect")
        await engine.stop(RunningModel("c0ffee", "soundsright-x", "10.0.0.2", 6500))
        await engine.remove_image("fm-gone:1")
    finally:
        await engine.aclose()
