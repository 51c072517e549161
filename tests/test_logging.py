from __future__ import annotations

import io
import logging

import orjson
import structlog

from soundsright_async.logs import configure_logging


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_off_a_tty_including_stdlib_and_bittensor() -> None:
    out = io.StringIO()
    configure_logging("auto", "info", stream=out)
    bt = logging.getLogger("bittensor")
    bt.addHandler(logging.StreamHandler(io.StringIO()))  # a library's own handler is removed...
    configure_logging("auto", "info", stream=out)  # ...when logging is (re)configured
    assert bt.handlers == []
    log = structlog.get_logger("soundsright_async.test")
    with structlog.contextvars.bound_contextvars(competition="DENOISING_16000HZ"):
        log.info("benchmark.finished", uid=3, hotkey="5F...")
    log.debug("hidden.debug")
    bt.warning("Could not connect to %s", "ws://127.0.0.1:9944")
    logging.getLogger("bittensor.transport").info("child logger")
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["event"], d["level"], d["logger"]) for d in lines] == [
        ("benchmark.finished", "info", "soundsright_async.test"),
        ("Could not connect to ws://127.0.0.1:9944", "warning", "bittensor"),
        ("child logger", "info", "bittensor.transport"),
    ]
    assert lines[0]["uid"] == 3
    assert lines[0]["competition"] == "DENOISING_16000HZ"
    assert lines[0]["timestamp"].endswith("Z")


def test_console_on_a_tty_and_forced_json() -> None:
    tty = _Tty()
    configure_logging("auto", "debug", stream=tty)
    structlog.get_logger("x").debug("pool.worker_died", exitcode=-9)
    text = tty.getvalue()
    assert "pool.worker_died" in text
    assert "exitcode" in text
    assert not text.lstrip().startswith("{")
    forced = _Tty()
    configure_logging("json", "info", stream=forced)
    structlog.get_logger("x").info("event.one")
    assert orjson.loads(forced.getvalue())["event"] == "event.one"


def test_exceptions_are_structured_in_json() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("x").exception("job.failed")
    record = orjson.loads(out.getvalue())
    assert record["event"] == "job.failed"
    assert record["exception"][0]["exc_type"] == "ValueError"
    assert record["exception"][0]["exc_value"] == "boom"
