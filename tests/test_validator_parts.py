"""The validator's pure decisions, its store and its message builders, without processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import orjson
import pytest

from soundsright_async.chain import Metagraph, Neuron
from soundsright_async.protocol import FeedbackRequest, commitment_hash, decode_message
from soundsright_async.runtime import Backoff, Changes, RetryLater, TaskBoard, every
from soundsright_async.validator._epochs import EpochClock, acceptance, run_order, seed_from_hash
from soundsright_async.validator._messages import epoch_feedback, judge_input, result_feedback
from soundsright_async.validator._store import (
    SCHEMA_VERSION,
    CandidateRow,
    OutboxItem,
    ResultRow,
    Store,
    StoreError,
)
from soundsright_async.validator._weights import weights_for
from soundsright_async.validator.judging import judge_epoch, parse_epoch_input
from soundsright_async.validator.settings import load_validator_settings

REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
COMP = "DENOISING_16000HZ"


# -- epochs ------------------------------------------------------------------------------------


def test_epoch_clock_arithmetic() -> None:
    c = EpochClock(epoch_blocks=100, anchor_block=1000, stop_margin_blocks=10)
    assert c.epoch_of(999) is None
    assert [c.epoch_of(b) for b in (1000, 1099, 1100, 1250)] == [0, 0, 1, 2]
    assert (c.start(2), c.end(2)) == (1200, 1300)
    assert c.blocks_left(2, 1250) == 50
    assert c.blocks_left(2, 1400) == 0
    assert [c.may_start_run(2, b) for b in (1199, 1200, 1289, 1290, 1300)] == [
        False,
        True,
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="stop_margin_blocks"):
        EpochClock(epoch_blocks=10, stop_margin_blocks=10)


def test_seed_is_a_function_of_the_start_block_hash_only() -> None:
    assert seed_from_hash("0x" + "00" * 32) == 1922874735
    assert seed_from_hash("0xABCDEF") == seed_from_hash(" 0xabcdef ") == 3907475853


def test_acceptance_reasons() -> None:
    hk = "5Fminer"
    good = commitment_hash(namespace="ns", name="m", revision=REV, hotkey=hk, competition=COMP)
    from soundsright_async.competitions import get_competition

    comp = get_competition(COMP)
    args = {"hotkey": hk, "competition": comp, "namespace": "ns", "name": "m", "revision": REV}
    assert acceptance(**args, commitment=good, commitment_block=99, epoch_start=100) is None
    assert (
        acceptance(**args, commitment=good, commitment_block=100, epoch_start=100)
        == "committed_after_epoch_start"
    )
    other = commitment_hash(
        namespace="ns", name="m", revision=REV, hotkey=hk, competition="DENOISING_48000HZ"
    )
    assert (
        acceptance(**args, commitment=other, commitment_block=1, epoch_start=100)
        == "commitment_mismatch"
    )
    assert (
        acceptance(**args, commitment=None, commitment_block=None, epoch_start=100)
        == "no_commitment"
    )


def _cand(hotkey: str, uid: int, block: int, **kw: object) -> CandidateRow:
    fields: dict[str, object] = {
        "epoch": 0,
        "hotkey": hotkey,
        "competition": COMP,
        "uid": uid,
        "namespace": "ns",
        "name": f"m{uid}",
        "revision": REV,
        "commitment_block": block,
        "state": "accepted",
    }
    fields.update(kw)
    return CandidateRow(**fields)  # type: ignore[arg-type]


def test_run_order_puts_previous_winners_first_then_earliest_commitment() -> None:
    cs = [_cand("a", 3, 50), _cand("b", 1, 40), _cand("c", 2, 40), _cand("w", 9, 90)]
    assert [c.hotkey for c in run_order(cs, {"w"})] == ["w", "b", "c", "a"]


# -- store -------------------------------------------------------------------------------------


def _result(hotkey: str, uid: int, *, passed: bool = True, pesq: float = 2.0) -> ResultRow:
    metrics = {
        "metrics": {
            "PESQ": {"average": pesq, "confidence_interval": [pesq - 0.1, pesq + 0.1]},
            "ESTOI": {"average": 0.8, "confidence_interval": [0.7, 0.9]},
        }
    }
    return ResultRow(
        epoch=0,
        hotkey=hotkey,
        competition=COMP,
        uid=uid,
        kind="miner",
        content_hash=f"hash-{hotkey}",
        passed=passed,
        failed_step=None if passed else "enhance",
        reason=None if passed else "timeout",
        detail=None,
        steps=[{"step": "build", "seconds": 1.5, "ok": True}],
        metrics=metrics if passed else None,
    )


async def test_store_epochs_candidates_results_and_outbox(tmp_path: Path) -> None:
    now = [1000.0]
    store = await Store(tmp_path / "v.sqlite", clock=lambda: now[0]).open()
    try:
        e = await store.record_epoch(0, start_block=10, end_block=20, start_hash="0xaa", seed=7)
        again = await store.record_epoch(0, start_block=10, end_block=20, start_hash="0xbb", seed=9)
        assert (e.seed, again.seed, again.start_hash, again.status) == (7, 7, "0xaa", "open")
        await store.reject(0, "a", COMP, 1, "unreachable", "no answer")
        assert await store.add_candidate(_cand("a", 1, 5)) is True
        assert await store.add_candidate(_cand("a", 1, 5)) is False
        assert await store.rejections(0) == []  # accepted later: the rejection is gone
        await store.add_candidate(_cand("b", 2, 6))
        await store.set_candidate(0, "a", COMP, state="running")
        await store.set_candidate(0, "b", COMP, state="running")
        item = OutboxItem("result", 0, "a", COMP, b"{}", expires_at=2000.0)
        await store.save_result(_result("a", 1), [item])
        # A crash now: b was running; a restart puts it back in the queue, a stays done.
        assert await store.requeue_interrupted(0) == 1
        states = {c.hotkey: (c.state, c.reason) for c in await store.candidates(0)}
        assert states == {"a": ("done", ""), "b": ("accepted", "interrupted")}
        [r] = await store.results(0)
        assert (r.hotkey, r.passed, r.averages()) == ("a", True, {"PESQ": 2.0, "ESTOI": 0.8})
        due = await store.outbox_due(1000.0, 10)
        assert [(d.kind, d.hotkey, d.attempts) for d in due] == [("result", "a", 0)]
        await store.outbox_retry(due[0].id, 1010.0, "refused")
        assert await store.outbox_due(1005.0, 10) == []
        assert await store.outbox_next_at() == 1010.0
        await store.outbox_done(due[0].id, "sent")
        assert await store.outbox_counts() == {"sent": 1}
        assert await store.drop_hotkey("a", "deregistered") == 1
        assert await store.results(0) == []
    finally:
        await store.aclose()


async def test_store_survives_reopen_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite"
    store = await Store(path).open()
    await store.record_epoch(3, start_block=1, end_block=2, start_hash="0x1", seed=5)
    await store.save_judgement(3, "in\n", "out\n", [])
    await store.aclose()
    store = await Store(path).open()
    try:
        assert await store.judgement() == (3, "in\n", "out\n")
        epoch = await store.epoch(3)
        assert epoch is not None
        assert epoch.status == "judged"
        assert await store.reports_pending(0.0) == [
            {
                "epoch": 3,
                "audit_done": 0,
                "remote": "pending",
                "attempts": 0,
                "next_at": 0.0,
                "last_error": "",
            }
        ]
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="downgrades are not supported"):
        await Store(path).open()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the state file"):
        await Store(garbage).open()


# -- judge input, Feedback, weights --------------------------------------------------------------


def test_judge_input_replays_through_the_judge() -> None:
    cands = [_cand("a", 1, 5), _cand("b", 2, 6)]
    results = [_result("a", 1, pesq=2.5), _result("b", 2, pesq=1.0), _result("c", 3, passed=False)]
    doc = judge_input(
        hotkeys=["val", "a", "b", "c"],
        permits=[True, False, False, False],
        candidates=cands,
        results=results,
        baseline={},
        previous_winners={},
        unprocessed={COMP: {"PESQ": 1.5, "ESTOI": 0.5}},
        burn_uid=None,
    )
    assert [r["hotkey"] for r in doc["results"][COMP]] == ["a", "b"]
    judgement = judge_epoch(parse_epoch_input(orjson.loads(orjson.dumps(doc))))
    # b is below the unprocessed input on the gate metric: it wins nothing, a takes everything.
    assert [round(w, 6) for w in judgement.weights] == [0.0, 1.0, 0.0, 0.0]


def test_feedback_bodies() -> None:
    c = _cand("a", 1, 5)
    item = result_feedback(c, _result("a", 1), seed=42, expires_at=99.0)
    msg = decode_message(FeedbackRequest, item.body)
    assert (msg.epoch, msg.seed, msg.competition, msg.winners) == (0, 42, COMP, {})
    assert msg.result is not None
    assert msg.result.metrics["PESQ"].mean == 2.0
    assert (msg.result.metrics["PESQ"].ci_low, msg.result.valid) == (1.9, True)
    winners = {COMP: {"PESQ": {"hotkey": "a", "block": 5, "average": 2.0}}}
    [epoch_item] = epoch_feedback(
        [c], {("a", COMP): _result("a", 1)}, winners, {"a": 1}, seed=42, expires_at=99.0
    )
    msg = decode_message(FeedbackRequest, epoch_item.body)
    assert msg.winners["PESQ"].uid == 1
    assert msg.winners["PESQ"].score == 2.0


def test_weights_skip_uids_whose_hotkey_changed() -> None:
    def neuron(uid: int, hotkey: str) -> Neuron:
        return Neuron(uid, hotkey, hotkey, 0.0, 0.0, False, None)

    mg = Metagraph(7, 10, (neuron(0, "v"), neuron(1, "a"), neuron(2, "new")))
    assert weights_for(["v", "a", "b"], [0.0, 0.75, 0.25], mg) == {1: 0.75}
    assert weights_for(["v", "a", "b"], [], mg) == {}


def test_shipped_config_loads_with_the_daemon_sections() -> None:
    root = Path(__file__).resolve().parent.parent
    settings, _ = load_validator_settings(root / "config/validator.toml", env={})
    assert settings.competition.epoch_blocks == 21600
    assert settings.status.host == "127.0.0.1"
    assert settings.weights.burn_uid is None
    assert len(settings.competition.competitions) == 4


# -- runtime -------------------------------------------------------------------------------------


async def test_every_backs_off_on_retryable_errors_and_recovers() -> None:
    board = TaskBoard(clock=lambda: 0.0)
    board.register("t", max_age_s=5.0)
    outcomes: list[object] = [OSError("down"), RetryLater("busy"), None, KeyError("bug")]
    waits: list[float] = []

    async def step() -> float | None:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return 0.0

    async def wait(s: float) -> None:
        waits.append(s)

    with pytest.raises(KeyError):
        await every(
            "t",
            step,
            interval=1.0,
            backoff=Backoff(0.001, 0.002),
            retry_on=(OSError,),
            wait=wait,
            on_success=board.tick,
            on_retry=board.failed,
        )
    info = board.tasks["t"]
    assert (info.state, info.failures, info.last_error, waits) == ("running", 0, "busy", [0.0])


def test_task_board_staleness() -> None:
    now = [100.0]
    board = TaskBoard(clock=lambda: now[0])
    board.register("clock", max_age_s=10.0)
    board.register("judging", max_age_s=float("inf"))
    assert board.stale() == []
    now[0] = 111.0
    assert board.stale() == ["clock"]
    board.tick("clock")
    board.failed("clock", OSError("chain down"))
    assert board.stale() == []
    snap = board.snapshot()["clock"]
    assert (snap["state"], snap["failures"], snap["last_error"]) == ("retrying", 1, "chain down")


async def test_changes_wakes_waiters() -> None:
    changes = Changes()
    got: list[int] = []

    async def waiter() -> None:
        got.append(await changes.wait_newer(0, 5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        changes.bump()
    assert got == [1]
    assert await changes.wait_newer(0, 0.01) == 1


# -- reporting -----------------------------------------------------------------------------------


async def test_reporting_writes_the_audit_log_once_and_posts_it_signed(tmp_path: Path) -> None:
    from typing import Any, cast

    from aiohttp import web
    from bittensor import http_auth as ha

    from soundsright_async.validator._context import Services
    from soundsright_async.validator._reporting import AUDIT_NAME, Reporter
    from soundsright_async.validator._state import ValidatorState
    from soundsright_async.validator.settings import ValidatorSettings
    from soundsright_async.wallet import create_wallet, load_hotkey

    create_wallet("val", "default", tmp_path / "w")
    key = load_hotkey("val", "default", tmp_path / "w")
    got: list[tuple[str, bytes]] = []
    answers = [503, 201]

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        caller = ha.verify(
            request.headers,
            body,
            method="POST",
            path=request.path_qs,
            self_hotkey_ss58=key.ss58_address,
        )
        got.append((caller.hotkey_ss58, body))
        return web.Response(status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/v1/epochs", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    now = [1000.0]
    store = await Store(tmp_path / "v.sqlite", clock=lambda: now[0]).open()
    settings = ValidatorSettings.model_validate(
        {
            "data_dir": str(tmp_path),
            "reporting": {"url": f"http://127.0.0.1:{port}/v1/epochs", "retry_backoff_s": 5.0},
        }
    )
    state = ValidatorState(
        hotkey=key.ss58_address, clock=EpochClock(10), competitions=(COMP,), now=lambda: now[0]
    )
    svc = Services(
        settings=settings,
        secrets=cast(Any, None),
        hotkey=key,
        chain=cast(Any, None),
        store=store,
        state=state,
        client=cast(Any, None),
        pool=cast(Any, None),
        runner=cast(Any, None),
        models=cast(Any, None),
        judge_requests=cast(Any, None),
    )
    reporter = Reporter(svc)
    try:
        await store.record_epoch(4, start_block=40, end_block=50, start_hash="0x4", seed=9)
        await store.save_judgement(4, '{"hotkeys": []}\n', '{"weights": []}\n', [])
        await reporter.step()  # audit logged; the server answers 503: retried later
        await reporter.step()  # not due yet: nothing sent
        now[0] += 5.0
        await reporter.step()  # 201
        await reporter.step()  # done: nothing more
    finally:
        await reporter.aclose()
        await store.aclose()
        await runner.cleanup()
    lines = (tmp_path / AUDIT_NAME).read_bytes().splitlines()
    assert len(lines) == 1
    record = orjson.loads(lines[0])
    assert (record["epoch"], record["seed"], record["judge_output"]) == (4, 9, {"weights": []})
    assert [(hk, body) for hk, body in got] == [(key.ss58_address, lines[0])] * 2
