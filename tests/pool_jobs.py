"""Module-level job functions for the pool tests (workers import them by name)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def add(a: int, b: int) -> int:
    return a + b


def timed_sleep(seconds: float) -> tuple[float, float, int]:
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic(), os.getpid()


def touch_after(path: str, seconds: float) -> str:
    time.sleep(seconds)
    Path(path).write_text("ran")
    return path


def write_pid_and_sleep(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def die_by_signal() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exit_hard(code: int) -> None:
    os._exit(code)


def raise_value_error(message: str) -> None:
    raise ValueError(message)


class _Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickling re-calls __init__ with one arg
        super().__init__(f"{a}-{b}")


def raise_unpicklable() -> None:
    raise _Unpicklable(1, 2)


def pid() -> int:
    return os.getpid()


def blas_threads() -> int:
    import numpy  # noqa: F401  (make sure its BLAS is loaded)
    from threadpoolctl import threadpool_info

    return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")
